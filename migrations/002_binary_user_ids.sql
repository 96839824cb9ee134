-- User ids and Idempotency-Keys are compared byte for byte, up to 255 bytes.
-- Under utf8mb4_bin (a PAD SPACE collation) "alice" and "alice " were equal,
-- so one user's live order blocked another's (UNIQUE(sale_id, live_user)),
-- and ids over 191 characters did not fit. VARBINARY has neither problem;
-- the API lets only valid UTF-8 through, so the bytes are still text.
ALTER TABLE orders
  MODIFY user_id VARBINARY(255) NOT NULL,
  MODIFY idempotency_key VARBINARY(255) NULL,
  MODIFY live_user VARBINARY(255) AS (IF(status IN ('held','paid'), user_id, NULL)) STORED;

-- Places given up. A queue token remembers its shopper's place so that,
-- after Redis loses a queue, the shopper is put back there; a shopper who
-- left must not be. The record must outlive the Redis that lost the queue,
-- so it is kept here. One row per leave; rows of final sales may be purged.
CREATE TABLE queue_leaves (
  sale_id  VARCHAR(64)     NOT NULL,
  user_id  VARBINARY(255)  NOT NULL,
  place    BIGINT UNSIGNED NOT NULL,
  left_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (sale_id, user_id, place)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Bans: a user id or an address prefix refused on every shopper call, in
-- every sale or in one. MySQL is where they live, so they survive a Redis
-- loss; every node keeps a copy in memory (bans.Watcher).
--
-- seq orders the rows and keeps the primary key short; id is the API's.
-- A ban is never changed but lifted (deleted_at), so a lift leaves a
-- record. ip is the normalised prefix as the API shows it ("203.0.113.0/24",
-- a single IPv4 address without "/32", IPv6 as its /64 or wider).
CREATE TABLE bans (
  seq        BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  id         VARCHAR(40)     NOT NULL,
  user_id    VARBINARY(255)  NULL,
  ip         VARCHAR(50)     NULL,
  sale_id    VARCHAR(64)     NULL,
  reason     VARCHAR(200)    NOT NULL DEFAULT '',
  created_at DATETIME(3)     NOT NULL,
  expires_at DATETIME(3)     NULL,
  deleted_at DATETIME(3)     NULL,
  PRIMARY KEY (seq),
  UNIQUE KEY bans_id (id),
  KEY bans_live (deleted_at, expires_at),
  KEY bans_sale (sale_id),
  CONSTRAINT bans_sale_fk FOREIGN KEY (sale_id) REFERENCES sales (id),
  CONSTRAINT bans_one_target CHECK ((user_id IS NULL) <> (ip IS NULL))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row whose version every create and lift bumps in its transaction:
-- a node polls this point read every 500 ms and reloads the bans only when
-- it moved. The update's row lock also serialises creates, so the cap on
-- live bans is exact.
CREATE TABLE ban_changes (
  id      TINYINT         NOT NULL,
  version BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT INTO ban_changes (id, version) VALUES (1, 0);

-- What operators did: every change an admin (or service) token made
-- through the operator API, with when, from which address, and the request.
CREATE TABLE audit_log (
  id       BIGINT        NOT NULL AUTO_INCREMENT,
  at       DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  actor    VARCHAR(16)   NOT NULL,
  address  VARCHAR(50)   NOT NULL DEFAULT '',
  action   VARCHAR(64)   NOT NULL,
  sale_id  VARCHAR(64)   NULL,
  target   VARCHAR(255)  NULL,
  request  TEXT          NULL,
  PRIMARY KEY (id),
  KEY audit_sale (sale_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

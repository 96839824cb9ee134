-- The webhooks' outbox: one row per event, written in the same transaction
-- as the change it reports, delivered (at least once) by any node's
-- dispatcher. state: 0 pending, 1 delivered, 2 given up (24 h of failures).
-- subject is the order's or the sale's id: one subject's events are
-- delivered in seq order, one at a time.
CREATE TABLE webhook_events (
  seq          BIGINT        NOT NULL AUTO_INCREMENT,
  id           VARCHAR(40)   NOT NULL,
  type         VARCHAR(32)   NOT NULL,
  subject      VARCHAR(64)   NOT NULL,
  payload      MEDIUMBLOB    NOT NULL,
  created_at   DATETIME(6)   NOT NULL,
  state        TINYINT       NOT NULL DEFAULT 0,
  attempts     INT           NOT NULL DEFAULT 0,
  next_at      DATETIME(6)   NOT NULL,
  delivered_at DATETIME(6)   NULL,
  last_status  INT           NULL,
  last_error   VARCHAR(255)  NULL,
  PRIMARY KEY (seq),
  UNIQUE KEY webhook_event_id (id),
  KEY webhook_due (state, next_at),
  KEY webhook_subject (subject, state, seq),
  KEY webhook_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The claim lock: dispatchers take this row FOR UPDATE while they claim
-- due events, so two nodes never claim one subject's events out of order.
CREATE TABLE webhook_claim (
  id INT NOT NULL PRIMARY KEY
) ENGINE=InnoDB;
INSERT INTO webhook_claim (id) VALUES (1);

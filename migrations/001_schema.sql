-- The durable record: items, sales with the unit counts MySQL guards, orders.

CREATE TABLE items (
  id          BIGINT       NOT NULL AUTO_INCREMENT,
  sku         VARCHAR(64)  NOT NULL,
  name        VARCHAR(200) NOT NULL,
  price_cents BIGINT       NOT NULL,
  currency    CHAR(3)      NOT NULL,
  created_at  DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  UNIQUE KEY items_sku (sku)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE sales (
  id                    VARCHAR(64)  NOT NULL,
  item_id               BIGINT       NOT NULL,
  name                  VARCHAR(200) NOT NULL,
  price_cents           BIGINT       NOT NULL,
  currency              CHAR(3)      NOT NULL,
  stock_total           INT          NOT NULL,
  -- sold counts paid units, held counts units in held orders; MySQL refuses
  -- any write that would make them exceed stock_total.
  sold                  INT          NOT NULL DEFAULT 0,
  held                  INT          NOT NULL DEFAULT 0,
  state                 VARCHAR(16)  NOT NULL,
  starts_at             DATETIME(3)  NOT NULL,
  ends_at               DATETIME(3)  NULL,
  queue_opens_at        DATETIME(3)  NULL,
  admission_rate        DOUBLE       NOT NULL,
  max_active            INT          NOT NULL,
  ticket_ttl_seconds    INT          NOT NULL,
  hold_ttl_seconds      INT          NOT NULL,
  per_user_limit        INT          NOT NULL,
  queue_mode            VARCHAR(16)  NOT NULL,
  abandon_after_seconds INT          NOT NULL,
  return_window_seconds INT          NOT NULL,
  -- bumped by every change, so Redis's live copy never goes back in time
  version               BIGINT       NOT NULL DEFAULT 1,
  created_at            DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at            DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  KEY sales_item (item_id),
  CONSTRAINT sales_item_fk FOREIGN KEY (item_id) REFERENCES items (id),
  CONSTRAINT sales_units_guard CHECK (sold >= 0 AND held >= 0 AND sold + held <= stock_total),
  CONSTRAINT sales_state CHECK (state IN ('upcoming','open','paused','closed','sold_out'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE orders (
  id              VARCHAR(40)  NOT NULL,
  sale_id         VARCHAR(64)  NOT NULL,
  user_id         VARCHAR(191) NOT NULL,
  quantity        INT          NOT NULL,
  amount_cents    BIGINT       NOT NULL,
  currency        CHAR(3)      NOT NULL,
  status          VARCHAR(16)  NOT NULL,
  -- NULL on a compensation tombstone, so the ticket can buy again.
  ticket_jti      VARCHAR(64)  NULL,
  idempotency_key VARCHAR(255) NULL,
  hold_expires_at DATETIME(3)  NULL,
  created_at      DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at      DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  -- One live order per sale and user.
  live_user       VARCHAR(191) AS (IF(status IN ('held','paid'), user_id, NULL)) STORED,
  PRIMARY KEY (id),
  UNIQUE KEY orders_live_user (sale_id, live_user),
  UNIQUE KEY orders_idempotency (sale_id, user_id, idempotency_key),
  UNIQUE KEY orders_ticket (ticket_jti),
  KEY orders_sale_status (sale_id, status),
  KEY orders_hold_expiry (status, hold_expires_at),
  CONSTRAINT orders_sale_fk FOREIGN KEY (sale_id) REFERENCES sales (id),
  CONSTRAINT orders_quantity CHECK (quantity >= 1),
  CONSTRAINT orders_status CHECK (status IN ('held','paid','cancelled','expired'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

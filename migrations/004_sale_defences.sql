-- The abuse-defence and shop-integration fields of a sale: the join
-- challenge, users per address, the operator's message, the shop's return
-- URL.
ALTER TABLE sales
  ADD COLUMN join_challenge   VARCHAR(16)   NOT NULL DEFAULT 'none',
  ADD COLUMN pow_difficulty   INT           NOT NULL DEFAULT 18,
  ADD COLUMN max_users_per_ip INT           NOT NULL DEFAULT 0,
  ADD COLUMN message_text     VARCHAR(280)  NULL,
  ADD COLUMN message_at       DATETIME(3)   NULL,
  ADD COLUMN return_url       VARCHAR(2048) NULL,
  ADD CONSTRAINT sales_join_challenge CHECK (join_challenge IN ('none','pow','captcha')),
  ADD CONSTRAINT sales_pow_difficulty CHECK (pow_difficulty BETWEEN 1 AND 30),
  ADD CONSTRAINT sales_max_users_per_ip CHECK (max_users_per_ip >= 0);

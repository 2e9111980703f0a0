-- Delivery details (shipping, pickup) are personal data: they live in their own table, written
-- in the order's own transaction, read by the company's export, and deleted as a whole when the
-- deal's retention ends. The orders stay.
CREATE TABLE deliveries (
    order_id    BIGINT PRIMARY KEY REFERENCES orders (id),
    name        TEXT NOT NULL,
    phone       TEXT NOT NULL,
    -- Absent for pickup.
    line1       TEXT,
    line2       TEXT,
    city        TEXT,
    postal_code TEXT,
    country     TEXT
);

-- Set once personal data was deleted, so a storefront that starts again later says so instead
-- of offering details it no longer has.
CREATE TABLE personal_data_deleted (
    only_row   BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    deleted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Coupon deals: the code is made with the order and committed in its row, so there is never a
-- code without a confirmed order nor two for one. Redemption and cancellation both change this
-- one row, each only while the other has not happened, so a redeemed coupon is never refunded
-- and a cancelled order's coupon is never redeemed.
ALTER TABLE orders ADD COLUMN coupon_code TEXT;
ALTER TABLE orders ADD COLUMN coupon_valid_until TIMESTAMPTZ;
ALTER TABLE orders ADD COLUMN coupon_redeemed_at TIMESTAMPTZ;
CREATE UNIQUE INDEX orders_coupon_code ON orders (coupon_code) WHERE coupon_code IS NOT NULL;

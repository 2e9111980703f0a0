-- One payment per purchase: the provider's key is derived from the shopper and the idempotency
-- key (`payments::purchase_key`), the same for every attempt. A purchase that was given up (its
-- reservation lapsed, reconciliation voided its payment) leaves a `lapsed` row holding the key,
-- so an attempt of the same purchase that commits later loses to it, as a late order id does.
-- Orders from before keyed their payment by the order id.
ALTER TABLE orders ADD COLUMN payment_key TEXT;
UPDATE orders SET payment_key = id::TEXT WHERE payment_key IS NULL AND status <> 'lapsed';
CREATE UNIQUE INDEX orders_payment_key ON orders (payment_key) WHERE payment_key IS NOT NULL;

-- Payments are authorised before the commit and captured after it; reconciliation finds the
-- payments of committed orders by their reference, and captures one whose capture did not get
-- through.
CREATE INDEX payments_by_reference ON payments (reference);

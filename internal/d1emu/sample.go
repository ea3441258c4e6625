package d1emu

import (
	"fmt"
	"strconv"
	"strings"
)

// SampleSQL seeds the demo database: customers, orders and order items with
// foreign keys, AUTOINCREMENT, an index, a view and a trigger, text with
// quotes, newlines and non-ASCII, a few blobs and NULLs; a few hundred rows,
// the same on every run.
const SampleSQL = `
CREATE TABLE customers (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  email TEXT NOT NULL UNIQUE,
  referred_by INTEGER REFERENCES customers(id),
  notes TEXT,
  avatar BLOB,
  created_at TEXT NOT NULL
);
CREATE TABLE orders (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  status TEXT NOT NULL CHECK (status IN ('pending','paid','shipped','cancelled')),
  total_cents INTEGER NOT NULL DEFAULT 0,
  placed_at TEXT NOT NULL
);
CREATE TABLE order_items (
  order_id INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
  sku TEXT NOT NULL,
  qty INTEGER NOT NULL CHECK (qty > 0),
  unit_price REAL NOT NULL,
  PRIMARY KEY (order_id, sku)
) WITHOUT ROWID;
CREATE INDEX orders_by_customer ON orders(customer_id, placed_at);

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60)
INSERT INTO customers (name, email, referred_by, notes, avatar, created_at)
SELECT
  CASE i % 5 WHEN 0 THEN 'O''Brien ' || i WHEN 1 THEN 'Zoë Müller ' || i WHEN 2 THEN 'Ana "Nana" Silva ' || i
    ELSE 'Customer ' || i END,
  'customer' || i || '@example.com',
  CASE WHEN i > 3 AND i % 4 = 0 THEN i / 2 END,
  CASE i % 6 WHEN 0 THEN 'Prefers "express" shipping.' || char(10) || 'Call before delivery; it''s a gated street.'
    WHEN 3 THEN 'VIP ★' ELSE NULL END,
  CASE WHEN i % 10 = 0 THEN unhex(printf('89504E470D0A1A0A0000000D49484452%08X', i)) END,
  printf('2024-%02d-%02dT%02d:15:00Z', 1 + i % 12, 1 + i % 28, i % 24)
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150)
INSERT INTO orders (customer_id, status, placed_at)
SELECT 1 + (i * 7) % 60,
  CASE i % 4 WHEN 0 THEN 'pending' WHEN 1 THEN 'paid' WHEN 2 THEN 'shipped' ELSE 'cancelled' END,
  printf('2024-%02d-%02dT%02d:%02d:00Z', 1 + i % 12, 1 + i % 28, i % 24, i % 60)
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
INSERT INTO order_items (order_id, sku, qty, unit_price)
SELECT 1 + i % 150, 'SKU-' || (100 + i % 37) || '-' || (i / 150), 1 + i % 5, round(0.99 + (i % 50) * 1.25, 2)
FROM n;

UPDATE orders SET total_cents = (
  SELECT CAST(round(sum(qty * unit_price) * 100) AS INTEGER) FROM order_items WHERE order_id = orders.id
) WHERE EXISTS (SELECT 1 FROM order_items WHERE order_id = orders.id);

DELETE FROM orders WHERE id = 150;

CREATE VIEW customer_totals AS
  SELECT c.id, c.name, count(o.id) AS orders, coalesce(sum(o.total_cents), 0) / 100.0 AS spent
  FROM customers c LEFT JOIN orders o ON o.customer_id = c.id AND o.status != 'cancelled'
  GROUP BY c.id;

CREATE TRIGGER order_items_total AFTER INSERT ON order_items
BEGIN
  UPDATE orders SET total_cents = total_cents + CAST(round(NEW.qty * NEW.unit_price * 100) AS INTEGER)
  WHERE id = NEW.order_id;
END;
`

// FTS5Kind names one way to declare an FTS5 table.
type FTS5Kind string

// FTS5 table kinds, and the table FTS5SQL creates for each.
const (
	FTS5Contentful  FTS5Kind = "contentful"  // articles_fts: keeps its own copy of the text
	FTS5External    FTS5Kind = "external"    // articles_ext: content='articles', content_rowid='id'
	FTS5Contentless FTS5Kind = "contentless" // articles_cl: content='', the text cannot be read back
)

// FTS5Kinds lists every kind.
var FTS5Kinds = []FTS5Kind{FTS5Contentful, FTS5External, FTS5Contentless}

// fts5Tables declares the FTS5 table of each kind and fills it from articles.
var fts5Tables = map[FTS5Kind]string{
	FTS5Contentful: `CREATE VIRTUAL TABLE articles_fts USING fts5(title, body, tokenize = 'porter unicode61');
INSERT INTO articles_fts (rowid, title, body) SELECT id, title, body FROM articles;
`,
	FTS5External: `CREATE VIRTUAL TABLE articles_ext USING fts5(title, body, content='articles', content_rowid='id');
INSERT INTO articles_ext (articles_ext) VALUES ('rebuild');
`,
	FTS5Contentless: `CREATE VIRTUAL TABLE articles_cl USING fts5(title, body, content='', prefix='2 3');
INSERT INTO articles_cl (rowid, title, body) SELECT id, title, body FROM articles;
`,
}

// FTS5SQL seeds a database with an ordinary table, articles (ids with a
// gap, text with quotes, a semicolon, a newline, non-ASCII and a NULL), and
// one FTS5 table over it of each kind given (every kind when none). D1
// refuses to export such a database.
func FTS5SQL(kinds ...FTS5Kind) string {
	if len(kinds) == 0 {
		kinds = FTS5Kinds
	}
	var b strings.Builder
	b.WriteString(`CREATE TABLE articles (id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT);
INSERT INTO articles (id, title, body) VALUES
  (1, 'Nightly backups', 'Every database, every night.'),
  (2, 'O''Brien''s notes', 'Line one' || char(10) || 'line two; with a semicolon'),
  (3, 'Zoë and ★', NULL),
  (7, 'A gap in the ids', 'rowid 7 follows rowid 3');
`)
	for _, k := range kinds {
		b.WriteString(fts5Tables[k])
	}
	return b.String()
}

// ParseSize reads a byte size: a plain number, or one with a suffix B, KB,
// MB, GB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024); K, M, G
// alone mean KiB, MiB, GiB.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	}[unit]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || v < 0 {
		return 0, fmt.Errorf("d1emu: bad size %q (want e.g. 1048576, 256MiB, 1GiB)", s)
	}
	return int64(v * mult), nil
}

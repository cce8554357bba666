-- Entity rows are bulk-loaded with COPY, which cannot evaluate now() per statement: default the column
-- to the transaction time instead, which is exactly the documents' processed_at of the same commit.
ALTER TABLE nlp.entities ALTER COLUMN processed_at SET DEFAULT now();

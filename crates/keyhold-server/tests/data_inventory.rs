//! SECURITY E3: the server's data inventory (`docs/server-data.md`) lists
//! exactly the tables and columns of the real schema — on SQLite and on
//! PostgreSQL alike — each with a class and a reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::collections::BTreeSet;

use keyhold_server::store::MetaStore;

#[path = "support/postgres.rs"]
mod postgres_cluster;

const CLASSES: [&str; 4] = ["ciphertext", "opaque id/hash", "public key", "plaintext metadata"];

/// A documented column: (table, column, class, why).
type Documented = (String, String, String, String);

/// The columns documented in `markdown`: the rows of each `| column | class | why |`
/// table under a `### Table `name`` heading.
fn documented(markdown: &str) -> Vec<Documented> {
    let mut out = Vec::new();
    let mut table: Option<String> = None;
    let mut in_rows = false;
    for line in markdown.lines() {
        let line = line.trim();
        if let Some(heading) = line.strip_prefix("#") {
            in_rows = false;
            table = heading
                .trim_start_matches('#')
                .trim()
                .strip_prefix("Table `")
                .and_then(|rest| rest.strip_suffix('`'))
                .map(str::to_owned);
            continue;
        }
        let Some(name) = &table else { continue };
        if !line.starts_with('|') {
            in_rows = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells == ["column", "class", "why"] {
            in_rows = true;
            continue;
        }
        if !in_rows || cells.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
            continue;
        }
        assert_eq!(cells.len(), 3, "table {name}: row {line:?} does not have three cells");
        let column = cells[0].trim_matches('`');
        out.push((name.clone(), column.to_owned(), cells[1].to_owned(), cells[2].to_owned()));
    }
    out
}

#[tokio::test]
async fn e3_every_stored_column_is_documented_and_every_documented_column_exists() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/server-data.md");
    let markdown = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let docs = documented(&markdown);
    assert!(!docs.is_empty(), "no `| column | class | why |` tables found in {path}");

    for (table, column, class, why) in &docs {
        assert!(CLASSES.contains(&class.as_str()), "{table}.{column}: class {class:?} is not one of {CLASSES:?}");
        assert!(why.len() >= 10, "{table}.{column}: say why it is stored and what it reveals");
    }
    let documented: Vec<(String, String)> = docs.iter().map(|(t, c, _, _)| (t.clone(), c.clone())).collect();
    let unique: BTreeSet<_> = documented.iter().cloned().collect();
    assert_eq!(unique.len(), documented.len(), "a column is documented twice");

    // Both engines' schemas: the same tables and columns, all documented.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = MetaStore::open(&dir.path().join("metadata.sqlite3")).await.unwrap();
    let url = tokio::task::spawn_blocking(postgres_cluster::database).await.unwrap();
    let postgres = MetaStore::connect(&url).await.unwrap();
    for store in [sqlite, postgres] {
        let engine = store.engine();
        let schema: BTreeSet<(String, String)> = store.schema().await.unwrap().into_iter().collect();
        assert!(schema.len() > 10, "{engine:?}: schema() found too little: {schema:?}");
        let undocumented: Vec<_> = schema.difference(&unique).collect();
        let missing: Vec<_> = unique.difference(&schema).collect();
        assert!(undocumented.is_empty(), "{engine:?}: stored but not documented in docs/server-data.md: {undocumented:?}");
        assert!(missing.is_empty(), "{engine:?}: documented in docs/server-data.md but not in the schema: {missing:?}");
    }
}

#[test]
fn the_parser_reads_only_inventory_tables() {
    let markdown = "\
# Title
| class | meaning |
|---|---|
| ciphertext | x |
### Table `t`
Some text.

| column | class | why |
|---|---|---|
| `a` | ciphertext | because |
| `b` | public key | because |

| level | event |
|---|---|
| INFO | x |
### Other
| column | class | why |
|---|---|---|
| `c` | ciphertext | not a table section |
";
    let cols: Vec<_> = documented(markdown).into_iter().map(|(t, c, class, _)| (t, c, class)).collect();
    assert_eq!(cols, vec![("t".into(), "a".into(), "ciphertext".into()), ("t".into(), "b".into(), "public key".into())]);
}

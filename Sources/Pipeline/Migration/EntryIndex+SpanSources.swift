import Store

extension EntryIndex {
    /// An entry's span sources with the index of the span each belongs to, as ingest stored
    /// them (`sources(of:)` gives the sources alone): what a copy of the row must carry.
    func spanSources(of id: String) throws -> [(source: String, span: Int)] {
        try db.query("SELECT source, span_index FROM sources WHERE entry_id = ? ORDER BY span_index, source", [.text(id)])
            .compactMap { row in
                guard let source = row.text("source"), let span = row.int("span_index") else { return nil }
                return (source, span)
            }
    }
}

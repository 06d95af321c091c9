import Store

/// A check failed on a segmented entry's shared prefix segment (docs/design/segments.md):
/// every entry naming it is damaged alike, so the answer names the segment, not only the
/// entry asked for. The log line has the underlying error, path included.
struct DamagedSegment: Error, CustomStringConvertible {
    var name: String
    var error: StoreError

    var description: String { "\(error)" }
}

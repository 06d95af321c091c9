/// A fetch that cannot be served as asked.
public enum FetchError: Error, CustomStringConvertible {
    case cannotExpand(layer: Int, problem: String)
    /// F16 output asked for an entry whose values go beyond F16's range.
    case exceedsF16(layer: Int, part: String)
    /// `--raw` of a segmented entry (two files) asked for on standard output, a device or a
    /// FIFO: only a regular file has a folder to put the segment beside.
    case segmentedRaw(id: String, segment: String)

    public var description: String {
        switch self {
        case .cannotExpand(let layer, let problem): "--expand: layer \(layer): \(problem)"
        case .exceedsF16(let layer, let part):
            "layer \(layer) \(part) hold values beyond F16's ±65504: fetch with --dtype bf16 or --dtype f32"
        case .segmentedRaw(let id, let segment):
            "--raw: entry \(id.prefix(16)) is segmented: its pack holds its own part and names segment \(segment), which holds the shared prefix; they are two files, written side by side with -o FILE (a regular file, and \(segment).kvpack beside it), not to standard output, a device or a FIFO (docs/design/segments.md)"
        }
    }
}

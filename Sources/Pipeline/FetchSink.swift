/// Where a fetch writes: a file or standard output (`OutputSink`), or an HTTP response.
public protocol FetchSink: AnyObject {
    /// Appends bytes in order.
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// True when `write(_:at:)` works, so layers may be written out of order by several threads.
    var isPositional: Bool { get }
    /// Writes at a byte offset (only when `isPositional`).
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws
    /// Writes `pieces` one after another from a byte offset (only when `isPositional`).
    func write(gathering pieces: [UnsafeRawBufferPointer], at offset: Int) throws
    /// Called once after the last byte.
    func finish() throws
    /// True when nothing written is seen before `finish` (a file renamed into place), so a
    /// check may still refuse the output up to then.
    var publishesWhenFinished: Bool { get }
}

extension FetchSink {
    public var isPositional: Bool { false }
    public var publishesWhenFinished: Bool { false }
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        preconditionFailure("positional write to a stream")
    }
    public func write(gathering pieces: [UnsafeRawBufferPointer], at offset: Int) throws {
        var at = offset
        for piece in pieces { try write(piece, at: at); at += piece.count }
    }
}

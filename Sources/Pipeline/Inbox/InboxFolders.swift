/// An inbox's folders, opened once at start (`InboxFolder`): the inbox itself, `.work/`,
/// `failed/` and, unless inputs are deleted, the done folder.
///
/// Folders inside the inbox are opened from the inbox's descriptor with O_NOFOLLOW, so a
/// symbolic link in their place is refused at start (`InboxError.symbolicLink`); one that
/// appears later is never followed, because nothing reaches a folder by its path again,
/// and `checkInPlace` stops the daemon when it notices. A done folder outside the inbox
/// (`--done DIR`) is the operator's choice and is opened as named.
public struct InboxFolders: Sendable {
    public let layout: InboxLayout
    public let inbox: InboxFolder
    public let work: InboxFolder
    public let failed: InboxFolder
    /// Nil when ingested inputs are deleted.
    public let done: InboxFolder?

    /// Creates missing folders and opens them all; throws `InboxError` for a folder that is
    /// a symbolic link, not a folder, or on another filesystem than the inbox.
    public init(layout: InboxLayout) throws {
        self.layout = layout
        inbox = try InboxFolder.named(layout.inbox)
        work = try inbox.child(".work")
        failed = try inbox.child("failed")
        if let done = layout.done {
            let prefix = layout.inbox == "/" ? "/" : layout.inbox + "/"
            self.done = done.hasPrefix(prefix) ? try inbox.descendant(String(done.dropFirst(prefix.count)))
                                               : try InboxFolder.named(done)
        } else {
            done = nil
        }
        for folder in [work, failed] + (done.map { [$0] } ?? []) where folder.device != inbox.device {
            throw InboxError.otherFilesystem(path: folder.path, inbox: inbox.path)
        }
    }

    /// Throws `InboxError.displaced` when a folder is no longer where it was opened.
    public func checkInPlace() throws {
        for folder in [inbox, work, failed] + (done.map { [$0] } ?? []) {
            if let now = folder.displacement() { throw InboxError.displaced(path: folder.path, now: now) }
        }
    }
}

/// Why the daemon refuses to work in an inbox (CLI exit code 3).
public enum InboxError: Error, CustomStringConvertible, Equatable {
    /// A folder inside the inbox (failed/, done/, .work/, a work folder) is a symbolic link.
    case symbolicLink(path: String)
    /// A file (or device, FIFO, …) is where a folder of the inbox should be.
    case notAFolder(path: String)
    /// A folder opened at start no longer is where it was: renamed, removed, or replaced
    /// (by a symbolic link, say) while the daemon ran.
    case displaced(path: String, now: String)
    /// An entry dropped into the inbox that is not a regular file (a symbolic link, a FIFO,
    /// a device): it is moved to failed/ with this as its report, never read or followed.
    case notAnInput(path: String, is: String)
    /// A folder is on another filesystem than the inbox, where a rename cannot move an input.
    case otherFilesystem(path: String, inbox: String)
    /// The inbox or done/ is one of the store's own folders, or done/ is the inbox or one of
    /// its own folders: the daemon would take blobs for inputs, or ingest its outputs again.
    case misplaced(path: String, problem: String)

    public var description: String {
        switch self {
        case .symbolicLink(let path):
            "\(path) is a symbolic link: the daemon works only in real folders inside the inbox and never follows a link there (remove it; the daemon creates the folder, and --done DIR puts ingested inputs elsewhere)"
        case .notAFolder(let path):
            "\(path) is not a folder: the daemon needs it for its own use (move the file away)"
        case .displaced(let path, let now):
            "\(path) is no longer the folder the daemon opened at start (there is now \(now) at that path): refusing to write anywhere else; stopping"
        case .notAnInput(let path, let what):
            "\(path) is \(what): only regular files are ingested, and the daemon never follows a link in the inbox (copy or move the file itself in)"
        case .otherFilesystem(let path, let inbox):
            "\(path) is on another filesystem than the inbox \(inbox): inputs move by rename, so every folder must be on the inbox's filesystem"
        case .misplaced(let path, let problem):
            "\(path) \(problem) (nothing was moved)"
        }
    }
}

import Foundation
import Store

/// Where an inbox keeps its files (docs/JOBS.md, "Inbox layout"):
///
///     INBOX/NAME                      dropped by producers; a candidate once it is complete
///     INBOX/.work/<daemon>/NAME       claimed by one daemon (rename), being ingested
///     INBOX/.work/<daemon>/.lock      flock held by that daemon while it lives
///     DONE/NAME                       ingested (default DONE = INBOX/done), unless --delete
///     INBOX/failed/NAME               could not be ingested ...
///     INBOX/failed/NAME.error.json    ... and why (stage, message, time, policy)
///
/// Everything lives on one filesystem so every move is an atomic rename. Names starting
/// with `.` and ending in `.tmp` or `.part` are never candidates: producers write those and
/// rename them when complete.
public struct InboxLayout: Sendable {
    public let inbox: String
    /// Where ingested inputs go; nil deletes them instead.
    public let done: String?
    public var work: String { inbox + "/.work" }
    public var failed: String { inbox + "/failed" }

    public init(inbox: String, done: String?) {
        self.inbox = Self.trimmed(inbox)
        self.done = done.map(Self.trimmed)
    }

    /// The default `done` folder of an inbox.
    public static func defaultDone(_ inbox: String) -> String { trimmed(inbox) + "/done" }

    /// True when a name in the inbox may be an input.
    public static func isCandidate(_ name: String) -> Bool {
        !name.hasPrefix(".") && !name.hasSuffix(".tmp") && !name.hasSuffix(".part") && !name.isEmpty
    }

    private static func trimmed(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }
}

import ArgumentParser
import Foundation
import LightKV
import Pipeline
import SharedStore
import Store

/// `kvstore watch INBOX`: the ingest daemon.
struct WatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Ingest every kvsnap file dropped into INBOX until SIGTERM or SIGINT (exit 0).",
        discussion: """
        Claims complete files by renaming them into INBOX/.work/<daemon>/, ingests them with --jobs workers,
        then moves each to --done (default INBOX/done) or deletes it (--delete). Inputs that cannot be
        ingested go to INBOX/failed/ with NAME.error.json beside them, as do links, FIFOs and devices (never
        followed or read). Names starting with '.' or ending in .tmp or .part are ignored. A symbolic link in
        place of failed/, done/ or .work/ is refused (exit 3). One log line per file on stderr. See docs/JOBS.md.
        """)

    @OptionGroup var options: StoreOptions
    @OptionGroup var policyFile: PolicyFileOption

    @Argument(help: "The inbox folder.")
    var inbox: String

    @Option(name: .long, help: "Compression policy (see `kvstore policies`).")
    var policy = "none"

    @Option(name: .long, help: "Files ingested at once.")
    var jobs = 1

    @Option(name: .long, help: "Move ingested inputs here (default INBOX/done; same filesystem as INBOX).")
    var done: String?

    @Flag(name: .long, help: "Delete ingested inputs instead of moving them.")
    var delete = false

    @Flag(name: .long, help: "Poll the inbox instead of using inotify.")
    var poll = false

    @Flag(name: .long, help: "Ingest what is there now, then exit.")
    var once = false

    @Option(name: .long, help: "Seconds a file must stay unchanged before it is claimed (unless renamed in).")
    var settle = 1.0

    @Option(name: .long, help: "Seconds between inbox scans.")
    var interval = 0.25

    func validate() throws {
        if delete && done != nil { throw ValidationError("--done and --delete exclude each other") }
        if jobs < 1 { throw ValidationError("--jobs must be at least 1, got \(jobs)") }
        if !WatchSettings.settleRange.contains(settle) {
            throw ValidationError("--settle must be within 0...86400 seconds, got \(settle)")
        }
        if !WatchSettings.intervalRange.contains(interval) {
            throw ValidationError("--interval must be within 0.001...3600 seconds, got \(interval)")
        }
    }

    func run() throws {
        let policy = try policyFile.resolve(self.policy)
        var settings = WatchSettings(policy: policy)
        settings.jobs = jobs
        settings.settle = settle
        settings.interval = interval
        settings.forcePolling = poll
        settings.once = once
        let layout = InboxLayout(inbox: inbox, done: delete ? nil : (done ?? InboxLayout.defaultDone(inbox)))
        try Self.runDaemon(store: try options.location.spec(), layout: layout, settings: settings, json: options.json)
    }

    /// Runs the daemon with signal handling; shared with `kvstore job run`.
    static func runDaemon(store: StoreSpec, layout: InboxLayout, settings: WatchSettings, json: Bool) throws {
        // A log reader that goes away (`watch … 2>&1 | head`, a log shipper restarting) must not
        // end the daemon: its log lines are lost, its inputs are not.
        signal(SIGPIPE, SIG_IGN)
        DaemonLog.bootstrap()
        let daemon = InboxDaemon(storeName: store.description, openStore: { try store.open() }, layout: layout, settings: settings,
                                 logger: DaemonLog.logger("kvstore.watch"))
        let signals = ShutdownSignals { _ in daemon.stop() }
        let summary = try daemon.run()
        withExtendedLifetime(signals) {}
        if json { Terminal.json(summary) }
    }
}

import Foundation
import Logging

/// Sets up swift-log for long-running commands: one structured line per event on
/// standard error, `key=value` metadata, so journald and log shippers can parse it. Values
/// that may come from outside (file names, errors) are built with `.fields`, which escapes
/// them (`LogField`), so no value can break a line.
public enum DaemonLog {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var bootstrapped = false

    /// Installs the stream handler once per process (swift-log allows a single bootstrap).
    public static func bootstrap(level: Logger.Level = .info) {
        lock.lock()
        defer { lock.unlock() }
        guard !bootstrapped else { return }
        bootstrapped = true
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }

    public static func logger(_ label: String) -> Logger { Logger(label: label) }
}

import Foundation
import LightKV
import Store

/// Named compression policies kept in a file, so job specs and commands can say `hot` or
/// `cold` instead of spelling a policy out (docs/DESIGN.md, "Policy files"):
///
///     kind = "policies"
///
///     [cold]
///     description = "not fetched for a month"
///     reduction = "lightkv35"
///     quantization = "int4g128m0t0"
///     codec = "zstd19"
///
/// Each table is one policy; every key is optional (`none`, `f16`, `zstd3`).
public struct PolicyFile: Sendable {
    public struct Named: Sendable {
        public var name: String
        public var policy: Policy
        public var description: String?
    }

    public let path: String
    public let policies: [String: Named]

    static let keys = ["description", "reduction", "quantization", "codec"]

    public static func load(path: String) throws(JobSpecError) -> PolicyFile {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw .unreadable(file: path, problem: "cannot read: \(error.localizedDescription)")
        }
        return try PolicyFile(parsing: text, file: path)
    }

    public init(parsing text: String, file: String) throws(JobSpecError) {
        path = file
        let toml = try TOMLSubset(parsing: text, file: file)
        let top = toml.tables[""] ?? [:]
        for (key, entry) in top where key != "kind" {
            throw .unknownKey(file: file, line: entry.line, key: key, known: ["kind"])
        }
        guard let kind = top["kind"] else { throw .missing(file: file, key: "kind") }
        guard kind.value == .string("policies") else {
            throw .badValue(file: file, line: kind.line, key: "kind", problem: "expected \"policies\"")
        }
        var policies: [String: Named] = [:]
        for (name, table) in toml.tables where name != "" {
            let line = toml.tableLines[name] ?? 0
            if (try? Policy(parsing: name)) != nil {
                throw .badValue(file: file, line: line, key: "[\(name)]",
                                problem: "\"\(name)\" already spells a policy; a name must not, or it would hide it")
            }
            var parts: [String: String] = [:]
            for (key, entry) in table.sorted(by: { $0.value.line < $1.value.line }) {
                guard Self.keys.contains(key) else {
                    throw .unknownKey(file: file, line: entry.line, key: "\(name).\(key)", known: Self.keys.map { "\(name).\($0)" })
                }
                guard case .string(let s) = entry.value else {
                    throw .badValue(file: file, line: entry.line, key: "\(name).\(key)", problem: "expected a string, got \(entry.value.typeName)")
                }
                parts[key] = s
            }
            let spelled = [parts["reduction"] ?? "none", parts["quantization"] ?? "f16", parts["codec"] ?? "zstd3"].joined(separator: "+")
            let policy: Policy
            do { policy = try Policy(parsing: spelled) } catch {
                let key = Self.keys.dropFirst().first { k in parts[k].map { error.description.contains("\"\($0)\"") } ?? false } ?? "reduction"
                throw .badValue(file: file, line: table[key]?.line ?? line, key: "\(name).\(key)", problem: "\(error)")
            }
            policies[name] = Named(name: name, policy: policy, description: parts["description"])
        }
        self.policies = policies
    }

    /// The policy a name in this file stands for, else the policy `text` spells.
    public func resolve(_ text: String) throws(PolicyError) -> Policy {
        if let named = policies[text] { return named.policy }
        return try Policy(parsing: text)
    }
}

extension Policy {
    /// `text` as a name from `file` when one is given and defines it, else as a policy spelling.
    public static func resolve(_ text: String, in file: PolicyFile?) throws(PolicyError) -> Policy {
        if let file { return try file.resolve(text) }
        return try Policy(parsing: text)
    }
}

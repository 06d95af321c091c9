import ArgumentParser
import LightKV
import Pipeline
import Store

struct PoliciesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policies",
        abstract: "List the built-in compression policies and the policy grammar, or check a policy file or a policy.")

    @Option(name: .long, help: "A policy file to check and list (docs/DESIGN.md, \"Policy files\").")
    var file: String?

    @Option(name: .long, help: "A policy to check (a spelling, or a name from --file): prints its canonical spelling, or says why it is none (exit 1).")
    var check: String?

    func run() throws {
        if let check {
            do {
                print(try Policy.resolve(check, in: try file.map { try PolicyFile.load(path: $0) }).name)
            } catch let e as PolicyError {
                throw StoreError.badPolicy(e)
            }
            return
        }
        if let file {
            let policies: PolicyFile
            policies = try PolicyFile.load(path: file)
            print("\(file): \(policies.policies.count) named policies")
            for named in policies.policies.values.sorted(by: { $0.name < $1.name }) {
                print("  " + named.name.padding(toLength: 12, withPad: " ", startingAt: 0) + named.policy.name
                      + (named.description.map { "  (\($0))" } ?? ""))
            }
            return
        }
        print("Built-in policies (parts joined by +: reduction, quantization, codec):")
        for (name, what) in PolicyCatalog.builtIn {
            // A name too long for the column gets a line of its own (never cut).
            let column = 26
            print("  " + (name.count < column ? name.padding(toLength: column, withPad: " ", startingAt: 0)
                                             : name + "\n  " + String(repeating: " ", count: column)) + what)
        }
        print("")
        print(PolicyCatalog.grammar)
        print("")
        print("Named policies: --policies FILE (or `policies = \"FILE\"` in a job spec) lets --policy name them.")
    }
}

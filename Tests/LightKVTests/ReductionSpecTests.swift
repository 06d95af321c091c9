import XCTest
@testable import LightKV

final class ReductionSpecTests: XCTestCase {
    func testTokensRoundTripThroughTheirCanonicalName() throws {
        for token in ["none", "lightkv", "lightkv@qwen", "lightkv@llava", "lightkv35", "lightkv20@qwen:groups=rematch:key=rep:renorm=on:guide=keys:windows=off",
                      "lightkv@12/4/0.5,18/2/0.5", "uniform55", "random35:seed=7", "prompt-topk20:profile=flat", "tome55", "tome",
                      "airmerge35:evict=0:near=0.95:guide=none", "aircache35:near=0.9:guide=none"] {
            XCTAssertEqual(try spec(token).name, token)
        }
    }

    func testEveryCataloguedPolicyParses() throws {
        for (name, _) in PolicyCatalog.builtIn { XCTAssertEqual(try Policy(parsing: name).name.hasPrefix(name.split(separator: "+")[0]), true, name) }
    }

    func testSettingsAreParsed() throws {
        guard case .lightkv(let s) = try spec("lightkv35@qwen:groups=rematch") else { return XCTFail("not lightkv") }
        XCTAssertEqual(s.retention, 0.35)
        XCTAssertEqual(s.schedule, .qwen)
        XCTAssertEqual(s.groups, .rematch)
        guard case .baseline(let b) = try spec("random20:seed=3") else { return XCTFail("not a baseline") }
        XCTAssertEqual(b, { var x = BaselineSettings(method: .random, retention: 0.2); x.seed = 3; return x }())
    }

    /// Which reductions read the prompt, and so cannot share a prefix between questions.
    func testReadsPromptNamesEveryPromptGuidedReduction() throws {
        for token in ["lightkv", "lightkv:guide=keys", "aircache10", "airmerge20", "prompt-topk55", "prompt-topk35:profile=adaptive"] {
            XCTAssertTrue(try spec(token).readsPrompt, token)
        }
        for token in ["none", "lightkv:guide=none", "airmerge20:guide=none", "aircache35:near=0.9:guide=none", "tome55", "uniform55", "random35"] {
            XCTAssertFalse(try spec(token).readsPrompt, token)
        }
    }

    func testUnknownMethodsAreNotReductions() throws {
        XCTAssertNil(try ReductionSpec(token: "int8"))
        XCTAssertNil(try ReductionSpec(token: "zstd3"))
    }

    func testBadTokensThrowNamingThePart() {
        for (token, fragment) in [("lightkv0", "retention"), ("lightkv150", "retention"), ("lightkv@gemma", "schedule \"gemma\""),
                                  ("lightkv:groups=sometimes", "groups=sometimes"), ("lightkv:speed=fast", "speed"),
                                  ("uniform35:seed=2", "seed"), ("tome35:profile=flat", "profile=flat"),
                                  ("lightkv@12/4/0.9", "12/4/0.9"), ("lightkv:renorm", "renorm"), ("lightkv:windows=2", "windows=2"), ("none35", "none"),
                                  ("airmerge20:guide=keys", "guide=keys"), ("aircache35:guide=none", "near")] {
            XCTAssertThrowsError(try ReductionSpec(token: token), token) { error in
                let text = String(describing: error)
                XCTAssertTrue(text.contains("\"\(token)\""), text)
                XCTAssertTrue(text.contains(fragment), "\(text) should mention \(fragment)")
            }
        }
        XCTAssertThrowsError(try Policy(parsing: "lightkv+uniform55"))
        XCTAssertEqual(try Policy(parsing: "tome35+zstd9").reduction.name, "tome35")
    }
}

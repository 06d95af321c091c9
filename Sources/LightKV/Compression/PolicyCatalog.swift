/// The named policies `kvstore policies` lists, and the grammar they follow.
public enum PolicyCatalog {
    public static let builtIn: [(name: String, description: String)] = [
        ("none", "keys and values exactly as given, zstd level 3 (byte planes)"),
        ("none+lz4", "exact, lz4: fastest fetch"),
        ("lightkv", "prompt-guided progressive merging of vision tokens (~55% kept on average), f16, zstd3"),
        ("lightkv@qwen", "lightkv with the Qwen2.5-VL reference schedule (auto picks it for 28-layer models)"),
        ("lightkv35", "lightkv with its schedule moved earlier to keep ~35% of vision tokens on average"),
        ("uniform55", "baseline: every k-th vision token, same per-layer retention as lightkv55"),
        ("random55", "baseline: a seeded random subset of vision tokens"),
        ("prompt-topk55", "baseline: per layer, the vision tokens the prompt attends most"),
        ("tome55", "baseline: ToMe merging over whole frames, no prompt weights"),
    ]

    public static let grammar = """
    Grammar: PART[+PART...], at most one of each kind.
      reduction:    none | METHOD[PERCENT][@SCHEDULE][:KEY=VALUE...]
                    METHOD lightkv, uniform, random, prompt-topk, tome; PERCENT 1..100 average
                    vision retention; SCHEDULE auto, llava, qwen (lightkv also L/W/P,L/W/P...);
                    lightkv: groups=reuse|rematch key=mean|rep renorm=on|off guide=query|keys|none
                             windows=on|off
                    baselines: profile=schedule|flat (not tome), seed=N (random)
      quantization: f16
      codec:        zstdN (N = 1..19, default zstd3), lz4
    """
}

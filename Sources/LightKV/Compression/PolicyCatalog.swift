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
        ("aircache10", "AirCache: keep the 10% of vision tokens an elite window of prompt observers attends most, budget per layer by need"),
        ("airmerge20", "merge and evict: aircache's observers and budgets, the most observed kept exact, the ignored dropped, the rest merged"),
        ("int8", "no merging; keys int8 per channel, values int8 per token, groups of 32"),
        ("lightkv+int8", "lightkv, then int8 (text, 4 sink tokens and entries of size >= 8 kept in f16)"),
        ("lightkv+int4", "lightkv, then int4, two codes a byte, same keep rules"),
        ("lightkv+int4g128m0t0", "lightkv, then int4 in groups of 128 with only the sink tokens in f16"),
        ("lightkv+int8+lz4", "lightkv + int8 packed with lz4 for the fastest fetch"),
        ("airmerge20+int4g128m0t0r1", "airmerge20, then int4 in groups of 128, keys Hadamard-rotated: >= 10x smaller than F16 (docs/FIDELITY.md)"),
        ("airmerge35:budget=redundancy:protect=0.5:distinct=on+int8", "for photos: 35% of the vision tokens, taken from the layers whose neighbouring keys are near-duplicates, half the budget kept exact (one entry of each cluster of near-duplicates first), then int8: answers within KL 0.0036 on photos, 0.0056 on clips, same and new question; text-dense images kept whole, as by every reduction (docs/FIDELITY.md)"),
        ("airmerge20:budget=redundancy:protect=0.5:distinct=on+int4g128m0t0r1", "smallest for photos: 20% of a photo's vision tokens taken as the photo policy takes them, then rotated int4: photos 0.11 of F16 at KL 0.0098 / 0.0084 (same / new question), text-dense images kept whole at int4; not for video (clips 0.029 / 0.031) (docs/FIDELITY.md)"),
        ("airmerge35:evict=0:near=0.95:guide=none+int4g128m0t0r1", "merges only near-duplicates (keys >= 0.95 alike), drops nothing, reads no prompt (a shared prefix is stored once), then rotated int4: answers within KL 0.0064 on photos, pages and text, same and new question (docs/FIDELITY.md)"),
    ]

    public static let grammar = """
    Grammar: PART[+PART...], at most one of each kind.
      reduction:    none | METHOD[PERCENT][@SCHEDULE][:KEY=VALUE...]
                    METHOD lightkv, aircache, airmerge, uniform, random, prompt-topk, tome;
                    PERCENT 1..100 average vision retention (kept, or refused when the input's
                    shape cannot reach it); SCHEDULE auto, llava, qwen (lightkv also
                    L/W/P,L/W/P...; not aircache/airmerge)
                    lightkv: groups=reuse|rematch key=mean|rep renorm=on|off guide=query|keys|none
                             windows=on|off budget=schedule|adaptive near=S
                    aircache, airmerge: observers=K agreement=on|off budget=adaptive|mass|flat|redundancy
                             floor=F near=S guide=query|none; airmerge also protect=F evict=F
                    guide=none (lightkv, airmerge; aircache with near) reads no prompt: the
                    prefix before the first prompt is then stored once for every question
                    baselines: profile=schedule|flat (not tome), adaptive (prompt-topk), seed=N (random)
                    every method: dense=F keeps whole each image or video in which, over its more
                    redundant half of the layers, fewer than F of the entries have a neighbour
                    whose keys are 0.95 alike: text-dense pages, charts, screenshots (0.6;
                    dense=0 reduces every span, the method as published)
      quantization: f16 | int<b>[g<G>][s<N>][m<S>][t<0|1>][r<0|1>]
                    b 8, 4 or 2; G group size, a power of two (32); s sink positions kept in
                    f16 (4); m keep entries of size >= S in f16 (8, m0 off); t1 keep text in f16;
                    r1 Hadamard-rotate key rows before quantizing (power-of-two head_dim)
      codec:        zstdN (N = 1..19, default zstd3), lz4
    """
}

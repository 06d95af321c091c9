/// The named policies `kvstore policies` lists, and the grammar they follow.
public enum PolicyCatalog {
    public static let builtIn: [(name: String, description: String)] = [
        ("none", "keys and values exactly as given, zstd level 3 (byte planes)"),
        ("none+lz4", "exact, lz4: fastest fetch"),
    ]

    public static let grammar = """
    Grammar: PART[+PART...], at most one of each kind.
      reduction:    none
      quantization: f16
      codec:        zstdN (N = 1..19, default zstd3), lz4
    """
}

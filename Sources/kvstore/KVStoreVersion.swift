/// The version `kvstore --version` prints; the one place it is written.
enum KVStoreVersion {
    static let current = "0.1.0"
}

import Foundation
import SharedStore

/// Where a store's two parts live, spelled so that two specs naming the same place compare
/// equal: a directory by its real path, an S3 prefix by endpoint, bucket and prefix, a
/// PostgreSQL database by host, port and name (not by user).
extension StoreSpec {
    var blobPlace: String {
        switch blobs {
        case .directory(let path): "dir:" + Self.realPath(path)
        case .s3(let location): "s3:\(location.endpoint.absoluteString)/\(location.bucket)/\(location.prefix)"
        }
    }

    var indexPlace: String {
        switch index {
        case .sqlite(let directory): "dir:" + Self.realPath(directory)
        case .postgres(let location): "postgresql:\(location.host):\(location.port)/\(location.database)"
        }
    }

    /// The path with links resolved when it exists, else made absolute and tidied.
    static func realPath(_ path: String) -> String {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        return url.resolvingSymlinksInPath().path
    }
}

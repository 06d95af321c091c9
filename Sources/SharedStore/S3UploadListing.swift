import Foundation
import Store

/// One page of a ListMultipartUploads answer: the uploads started and neither completed nor
/// aborted, read by element name like `S3Listing`.
public struct S3UploadListing {
    public struct Upload: Sendable, Equatable {
        public var key: String
        public var uploadID: String
        /// When the upload was started, seconds since 1970 by the server's clock.
        public var initiated: Double
    }

    public var uploads: [Upload] = []
    /// Where the next page starts when the listing is truncated.
    public var next: (key: String, uploadID: String)?

    public init(xml: String, url: String) throws {
        for block in S3Listing.blocks("Upload", in: xml) {
            guard let key = S3Listing.firstValue(of: "Key", in: block), let id = S3Listing.firstValue(of: "UploadId", in: block),
                  let initiated = S3Listing.firstValue(of: "Initiated", in: block).flatMap(S3Dates.isoDate) else {
                throw StoreError.io(path: url, operation: "ListMultipartUploads (an upload without Key, UploadId or Initiated: \(block.prefix(200)))", errno: EIO)
            }
            uploads.append(Upload(key: key, uploadID: id, initiated: initiated.timeIntervalSince1970))
        }
        if S3Listing.firstValue(of: "IsTruncated", in: xml) == "true" {
            guard let key = S3Listing.firstValue(of: "NextKeyMarker", in: xml), let id = S3Listing.firstValue(of: "NextUploadIdMarker", in: xml) else {
                throw StoreError.io(path: url, operation: "ListMultipartUploads (truncated, but no NextKeyMarker and NextUploadIdMarker)", errno: EIO)
            }
            next = (key, id)
        }
    }
}

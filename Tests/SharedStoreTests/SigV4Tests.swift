import XCTest
@testable import SharedStore

/// The signer reproduces the signatures AWS publishes: the Signature Version 4 test suite
/// (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html) and the S3 API
/// reference's header-signing examples (AmazonS3/latest/API/sig-v4-header-based-auth.html).
final class SigV4Tests: XCTestCase {
    let suite = SigV4(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                      region: "us-east-1", service: "service")
    let s3 = SigV4(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                   region: "us-east-1", service: "s3")
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    var suiteHeaders: [String: String] { ["Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"] }
    var s3Headers: [String: String] {
        ["host": "examplebucket.s3.amazonaws.com", "x-amz-date": "20130524T000000Z", "x-amz-content-sha256": empty]
    }

    private func signature(_ authorization: String) -> String {
        String(authorization.split(separator: "=").last ?? "")
    }

    func testGetVanillaCanonicalRequestAndSignature() {
        let (request, signed) = suite.canonicalRequest(method: "GET", path: "/", query: [], headers: suiteHeaders, payloadHash: empty)
        XCTAssertEqual(request, "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\(empty)")
        XCTAssertEqual(signed, "host;x-amz-date")
        XCTAssertEqual(SigV4.sha256Hex(request), "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
        XCTAssertEqual(suite.authorization(method: "GET", path: "/", query: [], headers: suiteHeaders, payloadHash: empty),
                       "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    }

    func testTestSuiteQueryOrderPostAndHeaderCase() {
        XCTAssertEqual(signature(suite.authorization(method: "GET", path: "/", query: [("Param2", "value2"), ("Param1", "value1")],
                                                     headers: suiteHeaders, payloadHash: empty)),
                       "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500", "get-vanilla-query-order-key-case")
        XCTAssertEqual(signature(suite.authorization(method: "POST", path: "/", query: [], headers: suiteHeaders, payloadHash: empty)),
                       "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b", "post-vanilla")
        var headers = suiteHeaders
        headers["My-Header1"] = "VALUE1"
        let authorization = suite.authorization(method: "POST", path: "/", query: [], headers: headers, payloadHash: empty)
        XCTAssertTrue(authorization.contains("SignedHeaders=host;my-header1;x-amz-date,"), authorization)
        XCTAssertEqual(signature(authorization), "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d", "post-header-value-case")
    }

    func testS3GetObjectWithRange() {
        var headers = s3Headers
        headers["range"] = "bytes=0-9"
        let (request, _) = s3.canonicalRequest(method: "GET", path: "/test.txt", query: [], headers: headers, payloadHash: empty)
        XCTAssertEqual(SigV4.sha256Hex(request), "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")
        XCTAssertEqual(s3.authorization(method: "GET", path: "/test.txt", query: [], headers: headers, payloadHash: empty),
                       "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    func testS3PutObjectEncodesTheKeyAndSignsThePayloadHash() {
        let payload = SigV4.sha256Hex("Welcome to Amazon S3.")
        XCTAssertEqual(payload, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let path = "/" + SigV4.encode("test$file.text", keepSlash: true)
        XCTAssertEqual(path, "/test%24file.text")
        let headers = ["Date": "Fri, 24 May 2013 00:00:00 GMT", "host": "examplebucket.s3.amazonaws.com", "x-amz-date": "20130524T000000Z",
                       "x-amz-storage-class": "REDUCED_REDUNDANCY", "x-amz-content-sha256": payload]
        XCTAssertEqual(signature(s3.authorization(method: "PUT", path: path, query: [], headers: headers, payloadHash: payload)),
                       "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    func testS3ListObjectsAndSubresourceQueries() {
        XCTAssertEqual(signature(s3.authorization(method: "GET", path: "/", query: [("prefix", "J"), ("max-keys", "2")],
                                                  headers: s3Headers, payloadHash: empty)),
                       "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
        XCTAssertEqual(signature(s3.authorization(method: "GET", path: "/", query: [("lifecycle", "")], headers: s3Headers, payloadHash: empty)),
                       "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    }

    func testEncodingKeepsOnlyUnreservedBytes() {
        XCTAssertEqual(SigV4.encode("a b/c~d+e$é", keepSlash: true), "a%20b/c~d%2Be%24%C3%A9")
        XCTAssertEqual(SigV4.encode("a/b"), "a%2Fb")
        XCTAssertEqual(SigV4.amzDate(Date(timeIntervalSince1970: 1_440_938_160)), "20150830T123600Z")
    }
}

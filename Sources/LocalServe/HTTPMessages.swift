import FactoryModel
import Foundation

/// One HTTP request as the handlers see it: independent of SwiftNIO, so handlers are plain
/// async functions that tests can call without a socket.
public struct ServeRequest: Sendable {
    public var method: String
    /// The path as sent (percent-encoded), without the query.
    public var rawPath: String
    /// Path segments, percent-decoded (blob names may hold encoded `/` and spaces).
    public var segments: [String]
    /// Query parameters, percent-decoded. Keys keep their case; look them up with `query(_:)`.
    public var queryItems: [(name: String, value: String)]
    public var headers: [(name: String, value: String)]
    public var body: Data
    /// `http` or `https`, to build absolute URLs (Location, nextLink) that point back here.
    public var scheme: String

    public init(method: String, target: String, headers: [(name: String, value: String)], body: Data, scheme: String) {
        self.method = method.uppercased()
        self.headers = headers
        self.body = body
        self.scheme = scheme
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        rawPath = parts.isEmpty ? "/" : String(parts[0])
        segments = rawPath.split(separator: "/", omittingEmptySubsequences: true).map { ServeRequest.decode(String($0)) }
        var items: [(String, String)] = []
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&", omittingEmptySubsequences: true) {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                items.append((ServeRequest.decode(String(kv[0]), plusIsSpace: true),
                              kv.count > 1 ? ServeRequest.decode(String(kv[1]), plusIsSpace: true) : ""))
            }
        }
        queryItems = items
    }

    static func decode(_ s: String, plusIsSpace: Bool = false) -> String {
        let t = plusIsSpace ? s.replacingOccurrences(of: "+", with: " ") : s
        return t.removingPercentEncoding ?? t
    }

    /// A query parameter, ignoring the case of its name (ARM treats `$expand` and `$Expand` alike).
    public func query(_ name: String) -> String? {
        queryItems.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// A header, ignoring the case of its name.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// Where the client reached us (`Host`), for absolute URLs in responses.
    public var origin: String { "\(scheme)://\(header("Host") ?? "127.0.0.1")" }

    public var json: JSONValue? { JSONValue.parse(body) }
}

/// One HTTP response.
public struct ServeResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: Data

    public init(status: Int, headers: [(name: String, value: String)] = [], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func json(_ status: Int, _ value: JSONValue, headers: [(name: String, value: String)] = []) -> ServeResponse {
        ServeResponse(status: status, headers: [("Content-Type", "application/json; charset=utf-8")] + headers, body: value.data)
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    public mutating func setHeader(_ name: String, _ value: String) {
        headers.removeAll { $0.name.lowercased() == name.lowercased() }
        headers.append((name, value))
    }

    /// An ARM error body (`{"error": {"code", "message"}}`, common-types ErrorResponse) with
    /// Retry-After when the service asked to wait.
    public static func armError(_ error: CloudError) -> ServeResponse {
        var headers: [(name: String, value: String)] = [("x-ms-failure-cause", error.status >= 500 ? "service" : "gateway")]
        if let retry = error.retryAfter { headers.append(("Retry-After", String(RetryAfter.seconds(retry)))) }
        return .json(error.status, ["error": ["code": .string(error.code), "message": .string(error.message)]], headers: headers)
    }

    public static func armError(_ status: Int, _ code: String, _ message: String) -> ServeResponse {
        armError(CloudError(status: status, code: code, message: message))
    }
}

/// Retry-After is whole seconds in ARM ("will not support http-date"), so a local wait of 0.3 s
/// is rounded up: a client never polls before the operation can have moved on.
enum RetryAfter {
    static func seconds(_ value: Double) -> Int { max(1, Int(value.rounded(.up))) }
}

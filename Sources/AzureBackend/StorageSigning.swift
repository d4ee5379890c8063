import Crypto
import Foundation

/// Blob storage's Shared Key authorization (`--storage-auth key`): an HMAC-SHA256 with the account
/// key over the request's canonical form, as "Authorize with Shared Key" specifies for service
/// versions 2009-09-19 and later.
enum SharedKeySigner {
    static func authorization(_ request: HTTPRequestData, account: String, key: Data) -> String {
        let signature = HMAC<SHA256>.authenticationCode(for: Data(stringToSign(request, account: account).utf8), using: SymmetricKey(data: key))
        return "SharedKey \(account):\(Data(signature).base64EncodedString())"
    }

    static func stringToSign(_ request: HTTPRequestData, account: String) -> String {
        func h(_ name: String) -> String { request.header(name) ?? "" }
        let length = request.body.map { $0.isEmpty ? "" : String($0.count) } ?? ""
        let fields = [
            request.method, h("Content-Encoding"), h("Content-Language"), length, h("Content-MD5"), h("Content-Type"),
            request.header("x-ms-date") == nil ? h("Date") : "", h("If-Modified-Since"), h("If-Match"), h("If-None-Match"),
            h("If-Unmodified-Since"), h("Range"),
        ]
        let msHeaders = request.headers
            .filter { $0.name.lowercased().hasPrefix("x-ms-") }
            .map { ($0.name.lowercased(), $0.value.trimmingCharacters(in: .whitespaces)) }
            .sorted { $0.0 < $1.0 }
            .map { "\($0.0):\($0.1)\n" }
            .joined()
        return fields.joined(separator: "\n") + "\n" + msHeaders + canonicalizedResource(request.url, account: account)
    }

    /// `/{account}{encoded path}` then each query parameter, lower-cased and sorted, `\nname:v1,v2`.
    /// On a path-style endpoint (`https://127.0.0.1:PORT/{account}/…`) the path starts with the
    /// account, and it stays in: the resource is the path as sent, as Microsoft's SDKs sign it.
    static func canonicalizedResource(_ url: URL, account: String) -> String {
        let components = URLComponents(url: url, resolvingAgainstBaseURL: false)
        let path = components?.percentEncodedPath ?? url.path
        var result = "/\(account)\(path.isEmpty ? "/" : path)"
        var parameters: [String: [String]] = [:]
        for item in components?.queryItems ?? [] {
            parameters[item.name.lowercased(), default: []].append(item.value ?? "")
        }
        for name in parameters.keys.sorted() {
            result += "\n\(name):\(parameters[name]!.sorted().joined(separator: ","))"
        }
        return result
    }
}

/// A user delegation key (`Get User Delegation Key`): what a user delegation SAS is signed with.
public struct UserDelegationKey: Sendable, Equatable {
    public var signedOid: String
    public var signedTid: String
    public var signedStart: String
    public var signedExpiry: String
    public var signedService: String
    public var signedVersion: String
    public var value: String
}

/// Read-only, short-lived SAS tokens for copy sources in another storage account: a user delegation
/// SAS with Entra (no account key is ever read), a service SAS with `--storage-auth key`.
enum SASSigner {
    static let version = "2022-11-02"

    /// `sp=r&st=…&se=…&sr=b&sv=…&skoid=…&sig=…` for one blob, signed with a user delegation key.
    static func userDelegation(account: String, container: String, blob: String, start: Date, expiry: Date, key: UserDelegationKey) -> String {
        let st = iso(start)
        let se = iso(expiry)
        let resource = "/blob/\(account)/\(container)/\(blob)"
        let fields = [
            "r", st, se, resource, key.signedOid, key.signedTid, key.signedStart, key.signedExpiry, key.signedService, key.signedVersion,
            "", "", "", "", "https,http", version, "b", "", "", "", "", "", "", "",
        ]
        let signature = sign(fields.joined(separator: "\n"), key: Data(base64Encoded: key.value) ?? Data())
        return query([("sp", "r"), ("st", st), ("se", se), ("skoid", key.signedOid), ("sktid", key.signedTid), ("skt", key.signedStart),
                      ("ske", key.signedExpiry), ("sks", key.signedService), ("skv", key.signedVersion), ("spr", "https,http"),
                      ("sv", version), ("sr", "b"), ("sig", signature)])
    }

    /// A service SAS for one blob, signed with the account key.
    static func service(account: String, container: String, blob: String, start: Date, expiry: Date, accountKey: Data) -> String {
        let st = iso(start)
        let se = iso(expiry)
        let resource = "/blob/\(account)/\(container)/\(blob)"
        let fields = ["r", st, se, resource, "", "", "https,http", version, "b", "", "", "", "", "", "", ""]
        let signature = sign(fields.joined(separator: "\n"), key: accountKey)
        return query([("sp", "r"), ("st", st), ("se", se), ("spr", "https,http"), ("sv", version), ("sr", "b"), ("sig", signature)])
    }

    static func sign(_ text: String, key: Data) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: SymmetricKey(data: key))).base64EncodedString()
    }

    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    static func query(_ items: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return items.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }.joined(separator: "&")
    }
}

import Crypto
import FactoryModel
import Foundation
import LocalCloud

/// Who a Blob request acts as, once authenticated: what Get User Delegation Key needs (a bearer
/// token's principal) and what a SAS request may do (its grant).
enum StorageCaller: Sendable {
    case bearer(JSONValue)
    case sharedKey
    case sas(SASGrant)
}

/// What a verified SAS allows.
struct SASGrant: Sendable, Equatable {
    enum Kind: String, Sendable { case service, userDelegation = "user delegation", account }
    var kind: Kind
    var permissions: String
}

/// An authentication or authorization failure of the Blob service, with Azure's error code.
struct StorageAuthFailure: Error, Sendable {
    var status = 403
    var code = "AuthenticationFailed"
    var message: String

    static func authentication(_ detail: String) -> StorageAuthFailure {
        StorageAuthFailure(message: "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.\nAuthenticationErrorDetail:\(detail)")
    }

    var response: ServeResponse { BlobService.error(status, code, message) }
}

/// The Blob operations a SAS must permit: which level of the account a request addresses and which
/// permission letters allow it.
struct SASOperation: Sendable, Equatable {
    enum Level: Sendable { case service, container, object }
    var level: Level
    /// Any one of these letters in `sp` allows the operation.
    var permissions: Set<Character>

    static let read = SASOperation(level: .object, permissions: ["r"])

    /// The operation of a path-style Blob request (`/{account}[/{container}[/{blob}]]`).
    static func of(_ request: ServeRequest) -> SASOperation {
        let comp = request.query("comp")?.lowercased()
        switch request.segments.count {
        case 1:
            return SASOperation(level: .service, permissions: comp == "list" ? ["l"] : ["r"])
        case 2:
            switch request.method {
            case "PUT": return SASOperation(level: .container, permissions: ["c", "w"])
            case "DELETE": return SASOperation(level: .container, permissions: ["d"])
            default: return SASOperation(level: .container, permissions: comp == "list" ? ["l"] : ["r"])
            }
        default:
            switch (request.method, comp) {
            case ("GET", _), ("HEAD", _): return SASOperation(level: .object, permissions: ["r"])
            case ("DELETE", _): return SASOperation(level: .object, permissions: ["d"])
            case ("PUT", nil): return SASOperation(level: .object, permissions: ["c", "w"])
            default: return SASOperation(level: .object, permissions: ["w"])
            }
        }
    }
}

/// Azure Storage's own request signatures, verified with the emulator's own code: Shared Key
/// (`Authorization: SharedKey account:signature`) and shared access signatures in the query (service,
/// user delegation and account SAS). The string-to-sign is rebuilt from the request exactly as the
/// service documents it, so a client that signs anything else fails here as it would in Azure.
enum StorageSignature {
    /// How far `x-ms-date` (or `Date`) may be from the service's clock.
    static let allowedClockSkew: TimeInterval = 15 * 60

    // MARK: Shared Key

    /// Verifies `Authorization: SharedKey {account}:{signature}` with either account key.
    ///
    /// The canonicalized resource is `/{account}` followed by the request's path as sent. On this
    /// path-style port the path starts with the account, so SDKs (and Azurite's) sign
    /// `/{account}/{account}/{container}/{blob}`; the account-relative form a signer would use on
    /// `{account}.blob.core.windows.net` (`/{account}/{container}/{blob}`) is accepted too.
    static func verifySharedKey(_ request: ServeRequest, account: StorageAccountID, now: Date) -> StorageAuthFailure? {
        let credential = (request.header("Authorization") ?? "").dropFirst("SharedKey ".count)
        guard let colon = credential.lastIndex(of: ":") else {
            return .authentication("The Authorization header must be 'SharedKey {account}:{signature}'.")
        }
        let named = String(credential[..<colon])
        let signature = String(credential[credential.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
        guard named.lowercased() == account.name.lowercased() else {
            return .authentication("The account '\(named)' in the Authorization header is not the account of the request's URL, '\(account.name)'.")
        }
        guard let dateText = request.header("x-ms-date") ?? request.header("Date") else {
            return .authentication("Request date header not specified: a Shared Key request carries x-ms-date (or Date).")
        }
        guard let date = HTTPDate.parse(dateText) else {
            return .authentication("The Date header in the request is incorrect: '\(dateText)' is not an RFC 1123 date.")
        }
        if abs(date.timeIntervalSince(now)) > allowedClockSkew {
            return .authentication("Request date header too old: '\(dateText)'. It must be within 15 minutes of the service's time, \(HTTPDate.format(now)).")
        }
        let forms = canonicalPaths(request, account: account.name)
        let candidates = forms.map { sharedKeyStringToSign(request, canonicalizedResource: canonicalizedResource(request, account: account.name, path: $0)) }
        for key in LocalCloud.storageAccountKeys(account) {
            guard let secret = Data(base64Encoded: key) else { continue }
            for stringToSign in candidates where constantTimeEqual(sign(stringToSign, key: secret), signature) { return nil }
        }
        let shown = candidates[0].replacingOccurrences(of: "\n", with: "\\n")
        return .authentication("The MAC signature found in the HTTP request '\(signature)' is not the same as any computed signature. Server used following string to sign: '\(shown)'.")
    }

    /// The two readings of the path (see `verifySharedKey`): as sent, and without its account segment.
    static func canonicalPaths(_ request: ServeRequest, account: String) -> [String] {
        var paths = [request.rawPath]
        let prefix = "/" + account
        if request.rawPath.lowercased().hasPrefix(prefix.lowercased()) {
            let rest = String(request.rawPath.dropFirst(prefix.count))
            paths.append(rest.isEmpty ? "/" : rest)
        }
        return paths
    }

    /// The string-to-sign of Shared Key for the Blob service, version 2009-09-19 and later.
    static func sharedKeyStringToSign(_ request: ServeRequest, canonicalizedResource: String) -> String {
        func h(_ name: String) -> String { request.header(name) ?? "" }
        let length = h("Content-Length") == "0" ? "" : h("Content-Length")
        let date = request.header("x-ms-date") != nil ? "" : h("Date")
        let fields = [request.method, h("Content-Encoding"), h("Content-Language"), length, h("Content-MD5"), h("Content-Type"), date,
                      h("If-Modified-Since"), h("If-Match"), h("If-None-Match"), h("If-Unmodified-Since"), h("Range")]
        return fields.joined(separator: "\n") + "\n" + canonicalizedHeaders(request) + canonicalizedResource
    }

    /// Every `x-ms-` header, lowercased and sorted, `name:value\n` each; repeated headers join with commas.
    static func canonicalizedHeaders(_ request: ServeRequest) -> String {
        var values: [String: [String]] = [:]
        for (name, value) in request.headers where name.lowercased().hasPrefix("x-ms-") {
            values[name.lowercased(), default: []].append(unfold(value))
        }
        return values.keys.sorted().map { "\($0):\(values[$0]!.joined(separator: ","))\n" }.joined()
    }

    /// A header value with its linear whitespace folded to single spaces, as the service reads it.
    static func unfold(_ value: String) -> String {
        value.split(whereSeparator: { $0 == "\r" || $0 == "\n" }).map { $0.trimmingCharacters(in: .whitespaces) }
            .joined(separator: " ").trimmingCharacters(in: .whitespaces)
    }

    /// `/{account}{path}` and then each query parameter, lowercased and sorted, `\nname:v1,v2`.
    static func canonicalizedResource(_ request: ServeRequest, account: String, path: String) -> String {
        var values: [String: [String]] = [:]
        for (name, value) in request.queryItems { values[name.lowercased(), default: []].append(value) }
        return "/\(account)\(path)" + values.keys.sorted().map { "\n\($0):\(values[$0]!.sorted().joined(separator: ","))" }.joined()
    }

    // MARK: SAS

    /// What a SAS is checked against: the resource it is used on and the operation.
    struct SASTarget: Sendable {
        var account: StorageAccountID
        var container: String?
        var blob: String?
        var operation: SASOperation
        /// `http` or `https`: `spr=https` refuses plain http.
        var scheme: String
    }

    /// Verifies the SAS in `query` for `target`: a service SAS (signed with an account key), a user
    /// delegation SAS (`skoid`... signed with a user delegation key) or an account SAS (`ss`, `srt`).
    /// `bearerOID` is the object id of a bearer token sent with the request, for `sduoid`.
    static func verifySAS(_ query: [(name: String, value: String)], target: SASTarget, now: Date, bearerOID: String?,
                          delegationKey: (_ oid: String, _ tid: String, _ start: Date, _ expiry: Date) -> Data) -> Result<SASGrant, StorageAuthFailure> {
        var q: [String: String] = [:]
        for (name, value) in query { q[name.lowercased()] = value }
        func v(_ name: String) -> String { q[name] ?? "" }
        for required in ["sv", "sp", "se", "sig"] where v(required).isEmpty {
            return .failure(.authentication("\(required) is mandatory. Cannot be empty"))
        }
        let version = v("sv")
        guard version >= "2015-04-05" else {
            return .failure(.authentication("Version '\(version)' of the SAS is older than the local cloud verifies (2015-04-05 and later)."))
        }
        guard let expiry = parseSASTime(v("se")) else {
            return .failure(.authentication("se '\(v("se"))' is not an ISO 8601 UTC time."))
        }
        let start = v("st").isEmpty ? nil : parseSASTime(v("st"))
        if !v("st").isEmpty, start == nil {
            return .failure(.authentication("st '\(v("st"))' is not an ISO 8601 UTC time."))
        }
        if let start, start >= expiry {
            return .failure(.authentication("Signed expiry time [\(HTTPDate.format(expiry))] must be after signed start time [\(HTTPDate.format(start))]"))
        }
        if now >= expiry || (start.map { now < $0 } ?? false) {
            return .failure(.authentication("Signature not valid in the specified time frame: Start [\(start.map(HTTPDate.format) ?? "")] - Expiry [\(HTTPDate.format(expiry))] - Current [\(HTTPDate.format(now))]"))
        }
        if !v("srh").isEmpty || !v("srq").isEmpty {
            return .failure(.authentication("The local cloud does not verify SAS bound to request headers or query parameters (srh, srq)."))
        }
        let kind: SASGrant.Kind = !v("ss").isEmpty || !v("srt").isEmpty ? .account : (!v("skoid").isEmpty ? .userDelegation : .service)
        let stringToSign: String
        let keys: [Data]
        switch kind {
        case .account:
            guard v("ss").contains("b") else {
                return .failure(StorageAuthFailure(code: "AuthorizationServiceMismatch", message: "This request is not authorized to perform this operation using this service: ss '\(v("ss"))' does not include b (Blob)."))
            }
            let letter: Character = switch target.operation.level { case .service: "s"; case .container: "c"; case .object: "o" }
            guard v("srt").contains(letter) else {
                return .failure(StorageAuthFailure(code: "AuthorizationResourceTypeMismatch", message: "This request is not authorized to perform this operation using this resource type: srt '\(v("srt"))' does not include '\(letter)'."))
            }
            stringToSign = accountStringToSign(q, account: target.account.name)
            keys = LocalCloud.storageAccountKeys(target.account).compactMap { Data(base64Encoded: $0) }
        case .service, .userDelegation:
            let resource: String
            switch (v("sr"), target.operation.level) {
            case ("b", .object):
                resource = "/blob/\(target.account.name)/\(target.container ?? "")/\(target.blob ?? "")"
            case ("c", .object), ("c", .container):
                resource = "/blob/\(target.account.name)/\(target.container ?? "")"
            case ("b", _), ("c", _):
                return .failure(StorageAuthFailure(code: "AuthorizationResourceTypeMismatch", message: "This request is not authorized to perform this operation using this resource type: sr '\(v("sr"))' does not cover this request."))
            case ("", _):
                return .failure(.authentication("sr is mandatory. Cannot be empty"))
            default:
                return .failure(.authentication("sr '\(v("sr"))' is not verified by the local cloud, which takes b (blob) and c (container)."))
            }
            if kind == .userDelegation {
                switch userDelegationStringToSign(q, resource: resource, now: now, bearerOID: bearerOID, delegationKey: delegationKey) {
                case .success(let (text, key)): (stringToSign, keys) = (text, [key])
                case .failure(let failure): return .failure(failure)
                }
            } else {
                if !v("si").isEmpty {
                    return .failure(.authentication("Stored access policies (si '\(v("si"))') are not emulated: sign the SAS with its own sp and se."))
                }
                stringToSign = serviceStringToSign(q, resource: resource)
                keys = LocalCloud.storageAccountKeys(target.account).compactMap { Data(base64Encoded: $0) }
            }
        }
        guard keys.contains(where: { constantTimeEqual(sign(stringToSign, key: $0), v("sig")) }) else {
            return .failure(.authentication("Signature did not match. String to sign used was \(stringToSign.replacingOccurrences(of: "\n", with: "\\n"))"))
        }
        let protocols = v("spr")
        if !protocols.isEmpty, !protocols.split(separator: ",").contains(where: { $0.lowercased() == target.scheme.lowercased() }) {
            return .failure(StorageAuthFailure(code: "AuthorizationProtocolMismatch", message: "This request is not authorized to perform this operation using this protocol: spr '\(protocols)' does not allow \(target.scheme)."))
        }
        guard v("sp").contains(where: { target.operation.permissions.contains($0) }) else {
            return .failure(StorageAuthFailure(code: "AuthorizationPermissionMismatch", message: "This request is not authorized to perform this operation using this permission: sp '\(v("sp"))' lacks \(target.operation.permissions.sorted().map(String.init).joined(separator: " or "))."))
        }
        return .success(SASGrant(kind: kind, permissions: v("sp")))
    }

    /// Service SAS for Blob. 2015-04-05 to 2018-03-28: sp, st, se, canonicalizedResource, si, sip, spr,
    /// sv, rscc, rscd, rsce, rscl, rsct. 2018-11-09 and later add sr and signedSnapshotTime after sv;
    /// 2020-12-06 and later add ses after signedSnapshotTime.
    static func serviceStringToSign(_ q: [String: String], resource: String) -> String {
        func v(_ name: String) -> String { q[name] ?? "" }
        let version = v("sv")
        var fields = [v("sp"), v("st"), v("se"), resource, v("si"), v("sip"), v("spr"), version]
        if version >= "2018-11-09" { fields += [v("sr"), ""] }
        if version >= "2020-12-06" { fields.append(v("ses")) }
        fields += [v("rscc"), v("rscd"), v("rsce"), v("rscl"), v("rsct")]
        return fields.joined(separator: "\n")
    }

    /// User delegation SAS for Blob. 2020-12-06 and later: sp, st, se, canonicalizedResource, skoid,
    /// sktid, skt, ske, sks, skv, saoid, suoid, scid, sip, spr, sv, sr, signedSnapshotTime, ses, rscc,
    /// rscd, rsce, rscl, rsct. 2025-07-05 and later add skdutid and sduoid after scid; 2026-04-06 and
    /// later add the signed request headers and query parameters (srh, srq; empty here) after ses.
    /// The key is derived from the SAS's own key fields, checked first.
    static func userDelegationStringToSign(_ q: [String: String], resource: String, now: Date, bearerOID: String?,
                                           delegationKey: (String, String, Date, Date) -> Data) -> Result<(String, Data), StorageAuthFailure> {
        func v(_ name: String) -> String { q[name] ?? "" }
        let version = v("sv")
        guard version >= "2020-12-06" else {
            return .failure(.authentication("The local cloud verifies user delegation SAS of version 2020-12-06 and later; sv is '\(version)'."))
        }
        for required in ["skoid", "sktid", "skt", "ske", "sks", "skv"] where v(required).isEmpty {
            return .failure(.authentication("\(required) is mandatory. Cannot be empty"))
        }
        guard let keyStart = parseSASTime(v("skt")), let keyExpiry = parseSASTime(v("ske")) else {
            return .failure(.authentication("skt and ske must be ISO 8601 UTC times."))
        }
        guard v("sks").contains("b") else {
            return .failure(.authentication("The user delegation key is for service '\(v("sks"))', not b (Blob)."))
        }
        if now >= keyExpiry || now < keyStart {
            return .failure(.authentication("The user delegation key is not valid now: Start [\(HTTPDate.format(keyStart))] - Expiry [\(HTTPDate.format(keyExpiry))] - Current [\(HTTPDate.format(now))]"))
        }
        let delegatedUser = v("sduoid")
        if !delegatedUser.isEmpty, bearerOID?.lowercased() != delegatedUser.lowercased() {
            return .failure(StorageAuthFailure(code: "AuthorizationFailure", message: "This SAS is bound to user '\(delegatedUser)' (sduoid): the request must also carry that user's bearer token."))
        }
        var fields = [v("sp"), v("st"), v("se"), resource, v("skoid"), v("sktid"), v("skt"), v("ske"), v("sks"), v("skv"),
                      v("saoid"), v("suoid"), v("scid")]
        if version >= "2025-07-05" { fields += [v("skdutid"), delegatedUser] }
        fields += [v("sip"), v("spr"), version, v("sr"), "", v("ses")]
        if version >= "2026-04-06" { fields += ["", ""] }
        fields += [v("rscc"), v("rscd"), v("rsce"), v("rscl"), v("rsct")]
        return .success((fields.joined(separator: "\n"), delegationKey(v("skoid"), v("sktid"), keyStart, keyExpiry)))
    }

    /// Account SAS. 2015-04-05 and later: accountname, sp, ss, srt, st, se, sip, spr, sv, each followed
    /// by a newline; 2020-12-06 and later add ses (and its newline) after sv.
    static func accountStringToSign(_ q: [String: String], account: String) -> String {
        func v(_ name: String) -> String { q[name] ?? "" }
        var fields = [account, v("sp"), v("ss"), v("srt"), v("st"), v("se"), v("sip"), v("spr"), v("sv")]
        if v("sv") >= "2020-12-06" { fields.append(v("ses")) }
        return fields.map { $0 + "\n" }.joined()
    }

    // MARK: Shared pieces

    /// HMAC-SHA256 of the UTF-8 string-to-sign with the decoded key, base64: every Storage signature.
    static func sign(_ stringToSign: String, key: Data) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: SymmetricKey(data: key))).base64EncodedString()
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// The ISO 8601 UTC forms SAS times take: `2025-01-01T00:00:00Z` (optionally with a fraction,
    /// or without seconds) and a bare date.
    static func parseSASTime(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime], [.withInternetDateTime, .withFractionalSeconds], [.withFullDate]] {
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return date }
        }
        let minutes = DateFormatter()
        minutes.locale = Locale(identifier: "en_US_POSIX")
        minutes.timeZone = TimeZone(identifier: "UTC")
        minutes.dateFormat = "yyyy-MM-dd'T'HH:mm'Z'"
        return minutes.date(from: text)
    }

    /// The form Azure writes times in user delegation keys: whole seconds, UTC, `Z`.
    static func formatSASTime(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }
}

import Crypto
import FactoryModel
import Foundation

/// The local cloud's Microsoft Entra stand-in: the OAuth 2.0 token endpoint (client credentials
/// with a secret, a certificate assertion or a federated token), the bearer-token check every ARM
/// and Blob request goes through, and the external identity providers a client meets before Entra
/// (the OIDC issuer of Kubernetes, GitHub Actions and Azure DevOps, managed identity endpoints).
///
/// Tokens are JWTs signed (HS256) with a key kept in the state directory, so they stay valid across
/// restarts of `local serve`, as Entra tokens outlive any one ARM front end. Tokens can be made to
/// expire early (`expireAll`), so clients' refresh paths can be tested without waiting an hour.
/// Everything else this authority signs (federated tokens, CI request tokens, user delegation keys)
/// uses a key derived from the same secret for that purpose only, so no kind of token verifies as
/// another and none of them needs a record to be checked later.
public actor TokenAuthority {
    /// Audiences, as Entra writes them into `aud` for the two resources the local cloud serves.
    public enum Audience: String, Sendable {
        case management = "https://management.azure.com/"
        case storage = "https://storage.azure.com"
    }

    public struct Settings: Sendable {
        /// Lifetime of issued tokens (Entra's default is about an hour).
        public var lifetime: Double
        /// When set, a client secret must equal it; otherwise any non-empty secret is accepted.
        public var requiredClientSecret: String?
        public init(lifetime: Double = 3599, requiredClientSecret: String? = nil) {
            self.lifetime = lifetime
            self.requiredClientSecret = requiredClientSecret
        }
    }

    private let key: SymmetricKey
    /// Signs federated (OIDC) tokens: a GitHub token whose audience is ARM must not be an ARM token.
    let federationKey: SymmetricKey
    /// Signs the request tokens of the CI OIDC endpoints (`ACTIONS_ID_TOKEN_REQUEST_TOKEN`, `SYSTEM_ACCESSTOKEN`)
    /// and App Service's `IDENTITY_HEADER`.
    nonisolated let ciRequestKey: Data
    /// Derives user delegation keys, so a key handed out once verifies its SAS later without a record.
    nonisolated let delegationKey: Data
    /// Client certificates registered per client id (lowercased), for certificate assertions.
    var certificates: [String: [ClientCertificate]] = [:]
    /// Where registered certificates are kept so they survive a restart; nil keeps them in memory.
    let certificateDirectory: URL?
    private var settings: Settings
    /// Tokens carry the generation they were issued in; `expireAll` starts a new one, and tokens of
    /// older generations are expired. (A generation, not a time: `iat` has whole seconds only.)
    private var generation = 0
    private var issued = 0

    /// `stateDirectory`, when given, keeps registered client certificates across restarts.
    public init(key: SymmetricKey, settings: Settings, stateDirectory: URL? = nil) {
        self.key = key
        self.settings = settings
        federationKey = Self.derive(key, "federated-issuer")
        // Kept as bytes (SymmetricKey is not Sendable): the nonisolated checks read them without a hop.
        ciRequestKey = Self.derive(key, "ci-request-token").withUnsafeBytes { Data($0) }
        delegationKey = Self.derive(key, "user-delegation-key").withUnsafeBytes { Data($0) }
        certificateDirectory = stateDirectory?.appendingPathComponent("serve-client-certificates")
        certificates = Self.loadCertificates(from: certificateDirectory)
    }

    /// A key for one purpose, derived from the state directory's secret.
    static func derive(_ key: SymmetricKey, _ purpose: String) -> SymmetricKey {
        SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data("imagefactory-local/\(purpose)".utf8), using: key)))
    }

    /// The signing key of a state directory, made on first use.
    public static func signingKey(stateDirectory: URL) throws -> SymmetricKey {
        let url = stateDirectory.appendingPathComponent("serve-token.key")
        if let data = try? Data(contentsOf: url), data.count == 32 { return SymmetricKey(data: data) }
        let key = SymmetricKey(size: .bits256)
        let data = key.withUnsafeBytes { Data($0) }
        try FileManager.default.createDirectory(at: stateDirectory, withIntermediateDirectories: true)
        try data.write(to: url, options: .atomic)
        try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.path)
        return key
    }

    /// How many tokens the endpoint issued (for tests of refresh).
    public var issuedCount: Int { issued }

    /// Makes every token issued so far expired; clients must get a new one.
    public func expireAll() {
        generation += 1
    }


    // MARK: Token endpoint

    /// The grant type of a client assertion, the only one Entra accepts with `client_assertion`.
    static let assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

    /// `POST /{tenant}/oauth2/v2.0/token` (and the v1 `/{tenant}/oauth2/token` with `resource=`).
    /// `endpoint` is the URL the request was posted to: a certificate assertion's `aud` must name it.
    public func token(tenant: String, form: [String: String], endpoint: String = "", now: Date = Date()) -> ServeResponse {
        func fail(_ status: Int, _ error: String, _ code: Int, _ description: String) -> ServeResponse {
            Self.entraError(status, error, code, description, now: now)
        }
        guard form["grant_type"] == "client_credentials" else {
            return fail(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '\(form["grant_type"] ?? "")'. The local cloud issues tokens for client credentials only.")
        }
        guard let clientID = form["client_id"], !clientID.isEmpty else {
            return fail(400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
        }
        if let assertion = form["client_assertion"] {
            guard form["client_assertion_type"] == Self.assertionType else {
                return fail(400, "invalid_request", 50027, "Invalid client_assertion_type: use \(Self.assertionType).")
            }
            if let failure = verifyClientAssertion(assertion, clientID: clientID, tenant: tenant, endpoint: endpoint, now: now) {
                return fail(failure.status, failure.error, failure.code, failure.description)
            }
        } else if let secret = form["client_secret"], !secret.isEmpty {
            if let required = settings.requiredClientSecret, secret != required {
                return fail(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '\(clientID)'.")
            }
        } else {
            return fail(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
        }
        let resource: String
        if let scope = form["scope"], !scope.isEmpty {
            let first = scope.split(separator: " ").first.map(String.init) ?? scope
            resource = first.hasSuffix("/.default") ? String(first.dropLast("/.default".count)) : first
        } else if let r = form["resource"], !r.isEmpty {
            resource = r
        } else {
            return fail(400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
        }
        let issued = accessToken(tenant: tenant, clientID: clientID, resource: resource, now: now)
        var body: [String: JSONValue] = ["token_type": "Bearer", "expires_in": .number(Double(issued.lifetime)),
                                         "ext_expires_in": .number(Double(issued.lifetime)), "access_token": .string(issued.token)]
        if form["resource"] != nil {
            // The v1 endpoint's extra fields, which older clients (and `az`'s MSI path) read.
            body["expires_on"] = .string(String(issued.issuedAt + issued.lifetime))
            body["resource"] = .string(resource)
        }
        return .json(200, .object(body), headers: [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")])
    }

    /// An access token as the token endpoint, IMDS and App Service's identity endpoint all issue it:
    /// the one place tokens are minted, so every face's tokens pass the same bearer check.
    func accessToken(tenant: String, clientID: String, resource: String, now: Date) -> (token: String, issuedAt: Int, lifetime: Int) {
        let audience = Self.audience(of: resource)?.rawValue ?? resource
        issued += 1
        let iat = Int(now.timeIntervalSince1970)
        let lifetime = Int(settings.lifetime.rounded(.up))
        let claims: JSONValue = [
            "aud": .string(audience), "iss": .string("https://sts.windows.net/\(tenant)/"), "iat": .number(Double(iat)),
            "nbf": .number(Double(iat)), "exp": .number(Double(iat + lifetime)), "appid": .string(clientID), "azp": .string(clientID),
            "tid": .string(tenant), "oid": .string(Self.objectID(clientID)), "sub": .string(Self.objectID(clientID)),
            "idtyp": "app", "ver": "1.0", "jti": .string(UUID().uuidString.lowercased()), "xms_lcgen": .number(Double(generation)),
        ]
        return (JWT.sign(claims, key: key), iat, lifetime)
    }

    /// The body of an Entra error (`AADSTS` code in the description and in `error_codes`).
    static func entraError(_ status: Int, _ error: String, _ code: Int, _ description: String, now: Date) -> ServeResponse {
        .json(status, ["error": .string(error), "error_description": .string("AADSTS\(code): \(description)"),
                       "error_codes": [.number(Double(code))], "timestamp": .string(now.ISO8601Format()),
                       "trace_id": .string(UUID().uuidString.lowercased()), "correlation_id": .string(UUID().uuidString.lowercased())])
    }

    static func audience(of resource: String) -> Audience? {
        let r = resource.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        if r == "https://management.azure.com" || r == "https://management.core.windows.net" { return .management }
        if r == "https://storage.azure.com" { return .storage }
        return nil
    }

    /// A stable object id for a client id, as Entra gives every service principal one.
    static func objectID(_ clientID: String) -> String {
        guid("oid:" + clientID)
    }

    /// A GUID-shaped name derived from `seed`: stable ids without a registry.
    static func guid(_ seed: String) -> String {
        let digest = Array(SHA256.hash(data: Data(seed.utf8)))
        let hex = digest.prefix(16).map { String(format: "%02x", $0) }.joined()
        let c = Array(hex)
        return "\(String(c[0..<8]))-\(String(c[8..<12]))-\(String(c[12..<16]))-\(String(c[16..<20]))-\(String(c[20..<32]))"
    }

    // MARK: Checking bearer tokens

    public enum Rejection: Sendable, Equatable {
        case missing, malformed, badSignature, expired(Date), revoked, wrongAudience(String)
    }

    /// Checks an `Authorization` header for a token of the given audience.
    public func check(_ authorization: String?, audience: Audience, now: Date = Date()) -> Rejection? {
        if case .rejected(let rejection) = verify(authorization, audience: audience, now: now) { return rejection }
        return nil
    }

    /// A bearer check's outcome: the token's claims (Get User Delegation Key needs its `oid` and `tid`) or why not.
    public enum BearerCheck: Sendable {
        case accepted(JSONValue)
        case rejected(Rejection)
    }

    /// Checks an `Authorization` header for a token of the given audience and returns its claims.
    public func verify(_ authorization: String?, audience: Audience, now: Date = Date()) -> BearerCheck {
        guard let authorization, !authorization.isEmpty else { return .rejected(.missing) }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return .rejected(.malformed) }
        let token = String(parts[1]).trimmingCharacters(in: .whitespaces)
        guard let claims = JWT.verify(token, key: key) else {
            return .rejected(JWT.claims(token) == nil ? .malformed : .badSignature)
        }
        let exp = Double(claims["exp"]?.int ?? 0)
        if exp <= now.timeIntervalSince1970 { return .rejected(.expired(Date(timeIntervalSince1970: exp))) }
        if (claims["xms_lcgen"]?.int ?? 0) < generation { return .rejected(.revoked) }
        let aud = claims["aud"]?.string ?? ""
        guard Self.audience(of: aud) == audience else { return .rejected(.wrongAudience(aud)) }
        return .accepted(claims)
    }
}

/// Compact JWS with HS256: just what the token endpoint and the bearer check need.
enum JWT {
    static func base64url(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decodeBase64url(_ text: Substring) -> Data? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s)
    }

    static func sign(_ claims: JSONValue, key: SymmetricKey, keyID: String = "imagefactory-local") -> String {
        let header: JSONValue = ["alg": "HS256", "typ": "JWT", "kid": .string(keyID)]
        let input = base64url(header.data) + "." + base64url(claims.data)
        let mac = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: key)
        return input + "." + base64url(Data(mac))
    }

    /// The claims of a well-formed JWT, without checking its signature.
    static func claims(_ token: String) -> JSONValue? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = decodeBase64url(parts[1]), let json = JSONValue.parse(payload), json.object != nil else { return nil }
        return json
    }

    /// The header of a well-formed JWT.
    static func header(_ token: String) -> JSONValue? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let data = decodeBase64url(parts[0]), let json = JSONValue.parse(data), json.object != nil else { return nil }
        return json
    }

    /// The claims of a token this authority signed; nil when the signature does not match.
    static func verify(_ token: String, key: SymmetricKey) -> JSONValue? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let signature = decodeBase64url(parts[2]) else { return nil }
        let input = Data((parts[0] + "." + parts[1]).utf8)
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: input, using: key) else { return nil }
        return claims(token)
    }
}

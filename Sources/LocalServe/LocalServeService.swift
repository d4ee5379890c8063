import FactoryModel
import Foundation
import LocalCloud

/// Settings of the REST face that are not the local cloud's own.
public struct LocalServeSettings: Sendable {
    /// Items per page of every ARM list (`nextLink` paging); small values exercise clients' paging.
    public var pageSize: Int
    /// ARM's per-subscription write limit, applied at the front door as ARM does.
    public var throttle: ThrottleSettings
    /// The tenant named in tokens and in the OpenID configuration.
    public var tenant: String

    public init(pageSize: Int = 100, throttle: ThrottleSettings = .azure, tenant: String = "00000000-0000-0000-0000-000000000001") {
        self.pageSize = max(1, pageSize)
        self.throttle = throttle
        self.tenant = tenant
    }
}

/// Answers ARM, Entra token and Blob REST requests from the embedded local cloud's state. Transport
/// free: `LocalServer` feeds it requests from sockets, tests may call `respond` directly.
///
/// The one port serves three faces, told apart by the first path segment:
/// `/subscriptions/...` and `/providers/...` are ARM (`management.azure.com`); `/{tenant}/oauth2/...`
/// and `/{tenant}/v2.0/.well-known/...` are Entra (`login.microsoftonline.com`); `/{account}/...` is
/// the Blob service of that storage account, path-style as Azurite does (`{account}.blob.core.windows.net`).
public final class LocalServeService: Sendable {
    public let cloud: LocalCloud
    public let settings: LocalServeSettings
    public let tokens: TokenAuthority
    let throttle: WriteThrottle

    public init(cloud: LocalCloud, settings: LocalServeSettings, tokens: TokenAuthority) {
        self.cloud = cloud
        self.settings = settings
        self.tokens = tokens
        throttle = WriteThrottle(settings.throttle)
    }

    /// Answers one request. Never throws: every failure becomes the error response Azure would give.
    public func respond(_ request: ServeRequest) async -> ServeResponse {
        var response = await route(request)
        let requestID = UUID().uuidString.lowercased()
        response.setHeader("x-ms-request-id", requestID)
        if let client = request.header("x-ms-client-request-id") { response.setHeader("x-ms-client-request-id", client) }
        response.setHeader("x-ms-correlation-request-id", request.header("x-ms-correlation-request-id") ?? requestID)
        response.setHeader("Date", HTTPDate.format(Date()))
        response.setHeader("Server", "ImageFactory-LocalCloud")
        return response
    }

    private func route(_ request: ServeRequest) async -> ServeResponse {
        let first = request.segments.first?.lowercased() ?? ""
        if first == "_imagefactory" { return await admin(request) }
        if request.segments.count >= 2, ["oauth2", "v2.0", ".well-known"].contains(request.segments[1].lowercased()) {
            return await identity(request)
        }
        if first == "subscriptions" || first == "providers" {
            if let rejection = await tokens.check(request.header("Authorization"), audience: .management) {
                return ARMAuth.unauthorized(rejection, tenant: settings.tenant)
            }
            return await arm(request)
        }
        if first.hasPrefix(DiskAccessURL.accountPrefix) {
            // A disk's SAS URL (beginGetAccess): the SAS is the credential, no bearer token.
            return await diskAccessBlob(request)
        }
        if !first.isEmpty, let account = try? await cloud.storageAccount(named: first) {
            if let rejection = await tokens.check(request.header("Authorization"), audience: .storage) {
                return BlobService.authenticationFailed(rejection)
            }
            return await BlobService(cloud: cloud, account: account).respond(request)
        }
        if !first.isEmpty, request.header("x-ms-version") != nil {
            return BlobService.error(404, "ResourceNotFound", "The storage account '\(request.segments[0])' does not exist in the local cloud.")
        }
        return .armError(404, "NotFound", "The local cloud serves /subscriptions (ARM), /{tenant}/oauth2 (tokens) and /{account} (Blob); '\(request.rawPath)' is none of them.")
    }

    // MARK: Entra

    private func identity(_ request: ServeRequest) async -> ServeResponse {
        let tenant = request.segments[0]
        let rest = request.segments.dropFirst().map { $0.lowercased() }
        if request.method == "POST", rest == ["oauth2", "v2.0", "token"] || rest == ["oauth2", "token"] {
            var form: [String: String] = [:]
            let text = String(decoding: request.body, as: UTF8.self)
            for pair in text.split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                form[ServeRequest.decode(String(kv[0]), plusIsSpace: true)] = kv.count > 1 ? ServeRequest.decode(String(kv[1]), plusIsSpace: true) : ""
            }
            return await tokens.token(tenant: tenant, form: form)
        }
        if request.method == "GET", rest.last == "openid-configuration" {
            // MSAL reads this before its first token request (tenant discovery).
            let base = "\(request.origin)/\(tenant)"
            return .json(200, [
                "token_endpoint": .string("\(base)/oauth2/v2.0/token"),
                "authorization_endpoint": .string("\(base)/oauth2/v2.0/authorize"),
                "issuer": .string("\(request.origin)/\(tenant)/v2.0"),
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                "response_types_supported": ["token"],
                "grant_types_supported": ["client_credentials"],
                "tenant_region_scope": "EU",
            ])
        }
        return .json(404, ["error": "not_found", "error_description": .string("The local cloud's token service has no '\(request.rawPath)'.")])
    }

    // MARK: Admin

    /// `/_imagefactory/...`: what tests and scripts need that Azure has no API for.
    private func admin(_ request: ServeRequest) async -> ServeResponse {
        let rest = request.segments.dropFirst().map { $0.lowercased() }
        switch (request.method, rest) {
        case ("GET", ["health"]):
            return .json(200, ["status": "ok", "stateDirectory": .string(cloud.stateDirectory.path)])
        case ("POST", ["expire-tokens"]):
            // Every token issued so far stops working: clients must refresh.
            await tokens.expireAll()
            return ServeResponse(status: 204)
        default:
            return .armError(404, "NotFound", "Unknown admin path '\(request.rawPath)'. Known: GET /_imagefactory/health, POST /_imagefactory/expire-tokens.")
        }
    }

    // MARK: Throttling

    /// ARM counts PUT, PATCH, DELETE and POST as writes, per subscription.
    func takeWriteToken(_ request: ServeRequest, subscription: String) async -> Result<Int, CloudError> {
        guard ["PUT", "PATCH", "DELETE", "POST"].contains(request.method) else { return .success(-1) }
        do {
            return .success(try await throttle.take(subscription: subscription.lowercased()))
        } catch let error as CloudError {
            return .failure(error)
        } catch {
            return .failure(CloudError(status: 500, code: "InternalServerError", message: "\(error)"))
        }
    }
}

/// The 401 answers of ARM, with the `WWW-Authenticate` challenge clients read.
enum ARMAuth {
    static func unauthorized(_ rejection: TokenAuthority.Rejection, tenant: String) -> ServeResponse {
        let code: String
        let message: String
        switch rejection {
        case .missing:
            code = "AuthenticationFailed"
            message = "Authentication failed. The 'Authorization' header is missing."
        case .malformed:
            code = "InvalidAuthenticationToken"
            message = "The access token is invalid."
        case .badSignature:
            code = "InvalidAuthenticationToken"
            message = "The access token has an invalid signature: it was not issued by this local cloud (or by one with another state directory)."
        case .expired(let at):
            code = "ExpiredAuthenticationToken"
            message = "The access token expiry UTC time '\(at.ISO8601Format())' is earlier than current UTC time '\(Date().ISO8601Format())'."
        case .revoked:
            code = "ExpiredAuthenticationToken"
            message = "The access token has expired: the local cloud was told to expire every token issued so far (POST /_imagefactory/expire-tokens). Get a new token."
        case .wrongAudience(let aud):
            code = "InvalidAuthenticationTokenAudience"
            message = "The access token has been obtained for wrong audience or resource '\(aud)'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.azure.com/'."
        }
        let challenge = "Bearer authorization_uri=\"https://login.microsoftonline.com/\(tenant)\", error=\"invalid_token\", error_description=\"\(message.replacingOccurrences(of: "\"", with: "'"))\""
        return .json(401, ["error": ["code": .string(code), "message": .string(message)]], headers: [("WWW-Authenticate", challenge)])
    }
}

/// RFC 1123 dates for `Date`, `Last-Modified` and `x-ms-copy-completion-time`.
enum HTTPDate {
    static func format(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }
}

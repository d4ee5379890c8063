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
    /// Most items per page of Blob lists (`NextMarker` paging): Azure's 5,000 unless made small.
    public var blobPageSize: Int

    public init(pageSize: Int = 100, throttle: ThrottleSettings = .azure, tenant: String = "00000000-0000-0000-0000-000000000001",
                blobPageSize: Int = 5000) {
        self.pageSize = max(1, pageSize)
        self.throttle = throttle
        self.tenant = tenant
        self.blobPageSize = min(5000, max(1, blobPageSize))
    }
}

/// Answers ARM, Entra token and Blob REST requests from the embedded local cloud's state. Transport
/// free: `LocalServer` feeds it requests from sockets, tests may call `respond` directly.
///
/// The one port serves these faces, told apart by the path:
/// - `/subscriptions/...` and `/providers/...`: ARM (`management.azure.com`), bearer tokens only.
/// - `/{tenant}/oauth2/...` and `/{tenant}/v2.0/.well-known/...`: Entra (`login.microsoftonline.com`);
///   client credentials with a secret, a certificate assertion (certificates registered through the
///   admin face) or a federated token of a local OIDC issuer.
/// - `GET /metadata/identity/oauth2/token` (IMDS, `169.254.169.254`) and `GET /msi/token` (App
///   Service's `IDENTITY_ENDPOINT`): managed identity tokens. Only these exact paths, without
///   `x-ms-version`, since `metadata` and `msi` are also valid storage account names.
/// - `GET /_github/idtoken` (`ACTIONS_ID_TOKEN_REQUEST_URL`) and `POST /_ado/oidctoken`
///   (`SYSTEM_OIDCREQUESTURI`): the CI OIDC token requests of GitHub Actions and Azure DevOps.
/// - `/{account}/...`: the Blob service of that storage account, path-style as Azurite does
///   (`{account}.blob.core.windows.net`), authorized with a bearer token, Shared Key or a SAS
///   (service, user delegation or account SAS), each verified as Azure does.
/// - `/md-.../...`: a managed disk's access SAS URL (beginGetAccess).
/// - `/_imagefactory/...`: admin endpoints Azure has no API for (`adminEndpoints`).
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
        // Every check of time (token lifetimes, Shared Key dates, SAS windows) reads the cloud's clock,
        // so tests move it instead of waiting.
        let now = cloud.clock.now()
        let first = request.segments.first?.lowercased() ?? ""
        if first == "_imagefactory" { return await admin(request, now: now) }
        if first == "_github" { return await gitHubIDToken(request, now: now) }
        if first == "_ado" { return await azureDevOpsOIDCToken(request, now: now) }
        if let response = await managedIdentity(request, now: now) { return response }
        if request.segments.count >= 2, ["oauth2", "v2.0", ".well-known"].contains(request.segments[1].lowercased()) {
            return await identity(request, now: now)
        }
        if first == "subscriptions" || first == "providers" {
            if let rejection = await tokens.check(request.header("Authorization"), audience: .management, now: now) {
                return ARMAuth.unauthorized(rejection, tenant: settings.tenant)
            }
            return await arm(request)
        }
        if first.hasPrefix(DiskAccessURL.accountPrefix) {
            // A disk's SAS URL (beginGetAccess): the SAS is the credential, no bearer token.
            return await diskAccessBlob(request)
        }
        if !first.isEmpty, let account = try? await cloud.storageAccount(named: first) {
            switch await storageCaller(request, account: account, now: now) {
            case .success(let caller):
                return await BlobService(cloud: cloud, account: account, caller: caller, tokens: tokens, now: now, pageSize: settings.blobPageSize).respond(request)
            case .failure(let failure):
                var response = failure.response
                if let version = request.header("x-ms-version") { response.setHeader("x-ms-version", version) }
                return response
            }
        }
        if !first.isEmpty, request.header("x-ms-version") != nil {
            return BlobService.error(404, "ResourceNotFound", "The storage account '\(request.segments[0])' does not exist in the local cloud.")
        }
        return .armError(404, "NotFound", "The local cloud serves /subscriptions (ARM), /{tenant}/oauth2 (tokens) and /{account} (Blob); '\(request.rawPath)' is none of them.")
    }

    /// Authenticates a Blob request as the service does, by what it carries: `Authorization: SharedKey`,
    /// a SAS in the query (`sig=`), or else a bearer token for `https://storage.azure.com`.
    private func storageCaller(_ request: ServeRequest, account: StorageAccountID, now: Date) async -> Result<StorageCaller, ServeResponseError> {
        let authorization = request.header("Authorization") ?? ""
        if authorization.hasPrefix("SharedKey ") {
            if let failure = StorageSignature.verifySharedKey(request, account: account, now: now) { return .failure(ServeResponseError(failure.response)) }
            return .success(.sharedKey)
        }
        if request.queryItems.contains(where: { $0.name.lowercased() == "sig" }) {
            let operation = SASOperation.of(request)
            let target = StorageSignature.SASTarget(account: account, container: request.segments.count > 1 ? request.segments[1] : nil,
                                                    blob: request.segments.count > 2 ? request.segments.dropFirst(2).joined(separator: "/") : nil,
                                                    operation: operation, scheme: request.scheme)
            var bearerOID: String?
            if !authorization.isEmpty, case .accepted(let claims) = await tokens.verify(authorization, audience: .storage, now: now) {
                bearerOID = claims["oid"]?.string
            }
            let tokens = self.tokens
            switch StorageSignature.verifySAS(request.queryItems, target: target, now: now, bearerOID: bearerOID,
                                              delegationKey: { tokens.userDelegationKey(oid: $0, tid: $1, start: $2, expiry: $3) }) {
            case .success(let grant): return .success(.sas(grant))
            case .failure(let failure): return .failure(ServeResponseError(failure.response))
            }
        }
        switch await tokens.verify(authorization.isEmpty ? nil : authorization, audience: .storage, now: now) {
        case .accepted(let claims): return .success(.bearer(claims))
        case .rejected(let rejection): return .failure(ServeResponseError(BlobService.authenticationFailed(rejection)))
        }
    }

    // MARK: Entra

    private func identity(_ request: ServeRequest, now: Date) async -> ServeResponse {
        let tenant = request.segments[0]
        let rest = request.segments.dropFirst().map { $0.lowercased() }
        if request.method == "POST", rest == ["oauth2", "v2.0", "token"] || rest == ["oauth2", "token"] {
            var form: [String: String] = [:]
            let text = String(decoding: request.body, as: UTF8.self)
            for pair in text.split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                form[ServeRequest.decode(String(kv[0]), plusIsSpace: true)] = kv.count > 1 ? ServeRequest.decode(String(kv[1]), plusIsSpace: true) : ""
            }
            return await tokens.token(tenant: tenant, form: form, endpoint: request.origin + request.rawPath, now: now)
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
    static let adminEndpoints = [
        "GET /_imagefactory/health", "POST /_imagefactory/expire-tokens",
        "PUT|DELETE /_imagefactory/client-certificates/{clientId}", "POST /_imagefactory/federated-tokens",
        "POST /_imagefactory/ci-request-tokens",
    ]

    private func admin(_ request: ServeRequest, now: Date) async -> ServeResponse {
        let rest = request.segments.dropFirst().map { $0.lowercased() }
        switch (request.method, rest) {
        case ("GET", ["health"]):
            return .json(200, ["status": "ok", "stateDirectory": .string(cloud.stateDirectory.path)])
        case ("POST", ["expire-tokens"]):
            // Every token issued so far stops working: clients must refresh.
            await tokens.expireAll()
            return ServeResponse(status: 204)
        case (_, let path) where path.count == 2 && path[0] == "client-certificates":
            return await clientCertificatesAdmin(request, clientID: request.segments[2])
        case ("POST", ["federated-tokens"]):
            return await federatedTokenAdmin(request, now: now)
        case ("POST", ["ci-request-tokens"]):
            // The secret a CI runner (or App Service) would be handed: ACTIONS_ID_TOKEN_REQUEST_TOKEN,
            // SYSTEM_ACCESSTOKEN, IDENTITY_HEADER.
            return .json(200, ["token": .string(tokens.ciRequestToken())])
        default:
            return .armError(404, "NotFound", "Unknown admin path '\(request.method) \(request.rawPath)'. Known: \(Self.adminEndpoints.joined(separator: ", ")).")
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

    /// An RFC 1123 date as clients send `x-ms-date` and `Date`.
    static func parse(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text.trimmingCharacters(in: .whitespaces))
    }
}

/// A ready error response carried through a `Result` (the routing helpers' failure side).
struct ServeResponseError: Error, Sendable {
    let response: ServeResponse
    init(_ response: ServeResponse) { self.response = response }
}

import Crypto
import _CryptoExtras
import FactoryModel
import Foundation

/// A bearer token and when it stops working.
public struct AccessToken: Sendable {
    public var token: String
    public var expiresOn: Date
    public init(token: String, expiresOn: Date) {
        self.token = token
        self.expiresOn = expiresOn
    }
}

/// Something that gets Entra tokens for a scope. One per run; the `TokenCache` in front of it
/// keeps tokens per scope and refreshes them before they expire.
public protocol TokenCredential: Sendable {
    /// The mode's name as `--auth` spells it, for messages and `doctor`.
    var mode: AuthMode { get }
    /// Who the run acts as, for `doctor` and the run report (ids only, never a secret).
    var identity: String { get }
    func getToken(scope: String) async throws -> AccessToken
}

/// How the backend signs in (`--auth`, `IMAGEFACTORY_AUTH`).
public enum AuthMode: String, Sendable, CaseIterable {
    case auto
    case clientSecret = "client-secret"
    case clientCertificate = "client-certificate"
    case workloadIdentity = "workload-identity"
    case githubOIDC = "github-oidc"
    case azureDevOpsOIDC = "azure-devops-oidc"
    case managedIdentity = "managed-identity"
    case azureCLI = "azure-cli"
}

/// Sign-in failed or is not configured: exit code 3 with what was tried and what to set.
public struct AuthenticationError: Error, Sendable, CustomStringConvertible, LocalizedError {
    public var mode: AuthMode
    public var message: String
    public var hint: String?
    /// The token service was unavailable (not a refusal): a later try may work.
    public var transient: Bool
    public init(_ mode: AuthMode, _ message: String, hint: String? = nil, transient: Bool = false) {
        self.mode = mode
        self.message = Redaction.text(message)
        self.hint = hint
        self.transient = transient
    }
    public var description: String { "\(mode.rawValue): \(message)" }
    public var errorDescription: String? { description }

    var factoryError: FactoryError { FactoryError(.backendUnavailable, "Azure sign-in failed (\(mode.rawValue)): \(message)", hint: hint) }
}

/// The Entra token endpoint, shared by every mode that ends in a client-credentials request.
struct EntraTokenEndpoint: Sendable {
    var authorityHost: URL
    var tenantID: String
    var transport: any HTTPTransport

    var url: URL { authorityHost.appendingPathComponent(tenantID).appendingPathComponent("oauth2/v2.0/token") }

    /// `POST /{tenant}/oauth2/v2.0/token` with a client-credentials form.
    func request(mode: AuthMode, form: [(String, String)], clock: any FactoryClock) async throws -> AccessToken {
        let now = clock.now()
        let body = form.map { "\(Self.formEncode($0.0))=\(Self.formEncode($0.1))" }.joined(separator: "&")
        let request = HTTPRequestData(method: "POST", url: url,
                                      headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json"),
                                                ("User-Agent", AzureHTTPClient.userAgent)],
                                      body: Data(body.utf8))
        let response = try await TokenHTTP.send(request, mode: mode, transport: transport, clock: clock)
        return try TokenHTTP.parse(response, mode: mode, now: now, what: "Entra token endpoint \(Redaction.url(url))")
    }

    static func formEncode(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }
}

/// Token requests: a few quick retries on transient failures, then a clear error.
enum TokenHTTP {
    static func send(_ request: HTTPRequestData, mode: AuthMode, transport: any HTTPTransport, clock: any FactoryClock,
                     timeout: Double = 30) async throws -> HTTPResponseData {
        var attempt = 0
        while true {
            attempt += 1
            do {
                let response = try await transport.send(request, timeout: timeout)
                if Self.retriable(response.status) && attempt < 4 {
                    try await clock.sleep(seconds: 0.5 * pow(2, Double(attempt - 1)))
                    continue
                }
                return response
            } catch let error as TransportError {
                if attempt < 3 {
                    try await clock.sleep(seconds: 0.5 * pow(2, Double(attempt - 1)))
                    continue
                }
                throw AuthenticationError(mode, "\(error.message)", transient: true)
            }
        }
    }

    /// What token services answer while they are busy or updating (IMDS gives 410 for up to 70 s).
    static func retriable(_ status: Int) -> Bool { status == 404 || status == 408 || status == 410 || status == 429 || status >= 500 }

    /// An OAuth token response (Entra v2, v1, IMDS and App Service shapes), or its error as Entra words it.
    static func parse(_ response: HTTPResponseData, mode: AuthMode, now: Date, what: String) throws -> AccessToken {
        let json = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] ?? [:]
        guard (200..<300).contains(response.status) else {
            let description = json["error_description"] as? String ?? (json["error"] as? [String: Any])?["message"] as? String
                ?? json["message"] as? String ?? String(decoding: response.body.prefix(300), as: UTF8.self)
            let code = json["error"] as? String ?? (json["error"] as? [String: Any])?["code"] as? String ?? "HTTP \(response.status)"
            throw AuthenticationError(mode, "\(what) answered \(response.status) \(code): \(description)", transient: retriable(response.status))
        }
        guard let token = json["access_token"] as? String, !token.isEmpty else {
            throw AuthenticationError(mode, "\(what) answered without an access_token.")
        }
        return AccessToken(token: token, expiresOn: expiry(json, now: now))
    }

    /// `expires_in` (seconds, number or string) or `expires_on` (epoch seconds, number or string).
    static func expiry(_ json: [String: Any], now: Date) -> Date {
        func number(_ v: Any?) -> Double? {
            if let d = v as? Double { return d }
            if let i = v as? Int { return Double(i) }
            if let s = v as? String { return Double(s) }
            return nil
        }
        if let on = number(json["expires_on"]), on > 1_000_000_000 { return Date(timeIntervalSince1970: on) }
        if let seconds = number(json["expires_in"]) { return now.addingTimeInterval(seconds) }
        return now.addingTimeInterval(300)
    }

    /// The resource of a `.default` scope, for the v1-style endpoints (IMDS, App Service, az).
    static func resource(of scope: String) -> String {
        scope.hasSuffix("/.default") ? String(scope.dropLast("/.default".count)) + "/" : scope
    }
}

// MARK: - The modes

/// `client-secret`: an app registration's secret (`AZURE_CLIENT_SECRET`).
struct ClientSecretCredential: TokenCredential {
    let endpoint: EntraTokenEndpoint
    let clientID: String
    let secret: String
    let clock: any FactoryClock
    var mode: AuthMode { .clientSecret }
    var identity: String { "app \(clientID) in tenant \(endpoint.tenantID)" }

    func getToken(scope: String) async throws -> AccessToken {
        try await endpoint.request(mode: mode, form: [("grant_type", "client_credentials"), ("client_id", clientID),
                                                      ("client_secret", secret), ("scope", scope)], clock: clock)
    }
}

/// `client-certificate`: a JWT client assertion signed with the certificate's key (PS256, with the
/// certificate's SHA-256 thumbprint as `x5t#S256`), as Entra asks of certificate credentials.
struct ClientCertificateCredential: TokenCredential {
    let endpoint: EntraTokenEndpoint
    let clientID: String
    let key: _RSA.Signing.PrivateKey
    /// base64url(SHA-256(certificate DER)).
    let thumbprintS256: String
    let clock: any FactoryClock
    var mode: AuthMode { .clientCertificate }
    var identity: String { "app \(clientID) (certificate \(thumbprintS256.prefix(12))…) in tenant \(endpoint.tenantID)" }

    /// Reads a PEM holding the certificate and its RSA private key (`AZURE_CLIENT_CERTIFICATE_PATH`).
    init(endpoint: EntraTokenEndpoint, clientID: String, pemPath: String, clock: any FactoryClock) throws {
        self.endpoint = endpoint
        self.clientID = clientID
        self.clock = clock
        guard let text = try? String(contentsOfFile: pemPath, encoding: .utf8) else {
            throw AuthenticationError(.clientCertificate, "Cannot read the certificate file '\(pemPath)'.",
                                      hint: "AZURE_CLIENT_CERTIFICATE_PATH must name a PEM file with the certificate and its private key.")
        }
        guard let der = PEM.blocks(text, label: "CERTIFICATE").first else {
            throw AuthenticationError(.clientCertificate, "'\(pemPath)' holds no certificate (-----BEGIN CERTIFICATE-----).",
                                      hint: "Put the certificate and its private key in one PEM file.")
        }
        let keyBlock = text.range(of: "-----BEGIN (RSA )?PRIVATE KEY-----[\\s\\S]+?-----END (RSA )?PRIVATE KEY-----", options: .regularExpression)
        guard let keyBlock, let key = try? _RSA.Signing.PrivateKey(pemRepresentation: String(text[keyBlock])) else {
            throw AuthenticationError(.clientCertificate, "'\(pemPath)' holds no unencrypted RSA private key.",
                                      hint: "Export the key without a password (openssl pkcs12 -nodes) next to the certificate; Entra certificates are RSA.")
        }
        self.key = key
        thumbprintS256 = Base64URL.encode(Data(SHA256.hash(data: der)))
    }

    func getToken(scope: String) async throws -> AccessToken {
        let now = clock.now()
        let header: [String: Any] = ["alg": "PS256", "typ": "JWT", "x5t#S256": thumbprintS256]
        let claims: [String: Any] = ["aud": endpoint.url.absoluteString, "iss": clientID, "sub": clientID,
                                     "jti": UUID().uuidString.lowercased(), "nbf": Int(now.timeIntervalSince1970),
                                     "iat": Int(now.timeIntervalSince1970), "exp": Int(now.timeIntervalSince1970) + 600]
        let input = Base64URL.encode(try JSONSerialization.data(withJSONObject: header, options: .sortedKeys)) + "."
            + Base64URL.encode(try JSONSerialization.data(withJSONObject: claims, options: .sortedKeys))
        let signature = try key.signature(for: Data(input.utf8), padding: .PSS)
        let assertion = input + "." + Base64URL.encode(signature.rawRepresentation)
        return try await endpoint.request(mode: mode, form: [
            ("grant_type", "client_credentials"), ("client_id", clientID), ("scope", scope),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), ("client_assertion", assertion),
        ], clock: clock)
    }
}

/// Where a federated credential's external token comes from.
enum FederatedTokenSource: Sendable {
    /// A file re-read whenever a token is needed (Kubernetes rotates it: `AZURE_FEDERATED_TOKEN_FILE`).
    case file(String)
    /// GitHub Actions' OIDC provider (`ACTIONS_ID_TOKEN_REQUEST_URL` + `_TOKEN`).
    case github(url: String, requestToken: String)
    /// Azure Pipelines' OIDC endpoint for a workload-identity service connection.
    case azureDevOps(requestURI: String, accessToken: String, serviceConnectionID: String)
}

/// `workload-identity`, `github-oidc`, `azure-devops-oidc`: an external OIDC token exchanged for an
/// Entra token through a federated identity credential on the app registration.
struct FederatedCredential: TokenCredential {
    let endpoint: EntraTokenEndpoint
    let clientID: String
    let source: FederatedTokenSource
    let mode: AuthMode
    let clock: any FactoryClock
    var identity: String { "app \(clientID) in tenant \(endpoint.tenantID), federated" }

    static let audience = "api://AzureADTokenExchange"

    func getToken(scope: String) async throws -> AccessToken {
        let assertion = try await externalToken()
        return try await endpoint.request(mode: mode, form: [
            ("grant_type", "client_credentials"), ("client_id", clientID), ("scope", scope),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), ("client_assertion", assertion),
        ], clock: clock)
    }

    func externalToken() async throws -> String {
        switch source {
        case .file(let path):
            guard let text = try? String(contentsOfFile: path, encoding: .utf8), !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw AuthenticationError(mode, "Cannot read the federated token file '\(path)'.",
                                          hint: "AZURE_FEDERATED_TOKEN_FILE must name the projected service account token (the workload identity webhook sets it).")
            }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        case .github(let url, let requestToken):
            let separator = url.contains("?") ? "&" : "?"
            guard let full = URL(string: url + separator + "audience=" + EntraTokenEndpoint.formEncode(Self.audience)) else {
                throw AuthenticationError(mode, "ACTIONS_ID_TOKEN_REQUEST_URL is not a URL.")
            }
            let response = try await TokenHTTP.send(HTTPRequestData(method: "GET", url: full, headers: [
                ("Authorization", "Bearer \(requestToken)"), ("Accept", "application/json"), ("User-Agent", AzureHTTPClient.userAgent),
            ]), mode: mode, transport: endpoint.transport, clock: clock)
            return try Self.field(response, "value", mode: mode, what: "GitHub's OIDC token request",
                                  hint: "Give the job `permissions: id-token: write`.")
        case .azureDevOps(let requestURI, let accessToken, let serviceConnectionID):
            let separator = requestURI.contains("?") ? "&" : "?"
            guard let full = URL(string: requestURI + separator + "api-version=7.1&serviceConnectionId=" + EntraTokenEndpoint.formEncode(serviceConnectionID)) else {
                throw AuthenticationError(mode, "SYSTEM_OIDCREQUESTURI is not a URL.")
            }
            let response = try await TokenHTTP.send(HTTPRequestData(method: "POST", url: full, headers: [
                ("Authorization", "Bearer \(accessToken)"), ("Content-Type", "application/json"), ("Accept", "application/json"),
                ("X-TFS-FedAuthRedirect", "Suppress"), ("User-Agent", AzureHTTPClient.userAgent),
            ], body: Data("{}".utf8)), mode: mode, transport: endpoint.transport, clock: clock)
            return try Self.field(response, "oidcToken", mode: mode, what: "Azure Pipelines' OIDC token request",
                                  hint: "Run the step in an AzureCLI@2 / AzurePowerShell task or map SYSTEM_ACCESSTOKEN: $(System.AccessToken), with a workload-identity service connection.")
        }
    }

    static func field(_ response: HTTPResponseData, _ name: String, mode: AuthMode, what: String, hint: String) throws -> String {
        guard (200..<300).contains(response.status) else {
            throw AuthenticationError(mode, "\(what) answered \(response.status): \(String(decoding: response.body.prefix(300), as: UTF8.self))", hint: hint)
        }
        guard let json = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any], let value = json[name] as? String, !value.isEmpty else {
            throw AuthenticationError(mode, "\(what) answered without '\(name)'.", hint: hint)
        }
        return value
    }
}

/// `managed-identity`: App Service / Functions (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`) or the VM's
/// instance metadata service (IMDS at `IMAGEFACTORY_IMDS_ENDPOINT`, default 169.254.169.254).
struct ManagedIdentityCredential: TokenCredential {
    enum Endpoint: Sendable {
        case appService(url: String, header: String)
        case imds(host: String)
    }
    let endpoint: Endpoint
    /// A user-assigned identity's client id (`AZURE_CLIENT_ID`), or nil for the system-assigned one.
    let clientID: String?
    let transport: any HTTPTransport
    let clock: any FactoryClock
    /// Short for the IMDS probe of `auto`, so a machine without IMDS fails fast.
    let timeout: Double
    var mode: AuthMode { .managedIdentity }
    var identity: String {
        let who = clientID.map { "user-assigned identity \($0)" } ?? "system-assigned identity"
        switch endpoint {
        case .appService: return "\(who) (App Service)"
        case .imds: return "\(who) (IMDS)"
        }
    }

    func getToken(scope: String) async throws -> AccessToken {
        let resource = EntraTokenEndpoint.formEncode(TokenHTTP.resource(of: scope))
        let client = clientID.map { "&client_id=\(EntraTokenEndpoint.formEncode($0))" } ?? ""
        let request: HTTPRequestData
        let what: String
        switch endpoint {
        case .appService(let url, let header):
            let separator = url.contains("?") ? "&" : "?"
            guard let full = URL(string: "\(url)\(separator)api-version=2019-08-01&resource=\(resource)\(client)") else {
                throw AuthenticationError(mode, "IDENTITY_ENDPOINT is not a URL.")
            }
            request = HTTPRequestData(method: "GET", url: full, headers: [("X-IDENTITY-HEADER", header), ("Accept", "application/json")])
            what = "The App Service identity endpoint"
        case .imds(let host):
            let base = host.hasSuffix("/") ? String(host.dropLast()) : host
            guard let full = URL(string: "\(base)/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(resource)\(client)") else {
                throw AuthenticationError(mode, "IMAGEFACTORY_IMDS_ENDPOINT is not a URL.")
            }
            request = HTTPRequestData(method: "GET", url: full, headers: [("Metadata", "true"), ("Accept", "application/json")])
            what = "IMDS (\(base))"
        }
        let response: HTTPResponseData
        if timeout < 5 {
            // `auto`'s quick probe: one try, so a machine without IMDS moves on at once.
            do {
                response = try await transport.send(request, timeout: timeout)
            } catch let error as TransportError {
                throw AuthenticationError(mode, "\(what) did not answer: \(error.message)",
                                          hint: "Managed identity works on an Azure VM, scale set, App Service or container with an identity assigned.")
            }
        } else {
            // Retried as azure-identity does: IMDS answers 410 while it updates, and 404/429/5xx when busy.
            response = try await TokenHTTP.send(request, mode: mode, transport: transport, clock: clock, timeout: timeout)
        }
        return try TokenHTTP.parse(response, mode: mode, now: clock.now(), what: what)
    }
}

/// `azure-cli`: the signed-in `az` (a laptop after `az login`, or an AzureCLI@2 task).
struct AzureCLICredential: TokenCredential {
    let executable: String
    let tenantID: String?
    let clock: any FactoryClock
    var mode: AuthMode { .azureCLI }
    var identity: String { "the account signed in to az" + (tenantID.map { " (tenant \($0))" } ?? "") }

    func getToken(scope: String) async throws -> AccessToken {
        var arguments = ["account", "get-access-token", "--scope", scope, "--output", "json"]
        if let tenantID { arguments += ["--tenant", tenantID] }
        let (status, output, error) = try await Self.run(executable, arguments)
        guard status == 0 else {
            let text = error.trimmingCharacters(in: .whitespacesAndNewlines)
            throw AuthenticationError(mode, "`az account get-access-token` failed: \(text.isEmpty ? "exit \(status)" : String(text.prefix(400)))",
                                      hint: "Run `az login` (and `az account set --subscription …`), or choose another --auth mode.")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: Data(output.utf8))) as? [String: Any], let token = json["accessToken"] as? String else {
            throw AuthenticationError(mode, "`az account get-access-token` printed no accessToken.")
        }
        var expiry: Date?
        if let on = json["expires_on"] as? Double ?? (json["expires_on"] as? Int).map(Double.init) ?? (json["expires_on"] as? String).flatMap(Double.init) {
            expiry = Date(timeIntervalSince1970: on)
        } else if let text = json["expiresOn"] as? String {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.dateFormat = "yyyy-MM-dd HH:mm:ss.SSSSSS"
            expiry = formatter.date(from: text)
        }
        return AccessToken(token: token, expiresOn: expiry ?? clock.now().addingTimeInterval(300))
    }

    /// Runs a process to its end without blocking a concurrency thread.
    static func run(_ executable: String, _ arguments: [String]) async throws -> (Int32, String, String) {
        try await withCheckedThrowingContinuation { continuation in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            let out = Pipe()
            let err = Pipe()
            process.standardOutput = out
            process.standardError = err
            process.standardInput = FileHandle.nullDevice
            let collected = OutputBox()
            out.fileHandleForReading.readabilityHandler = { handle in collected.append(out: handle.availableData) }
            err.fileHandleForReading.readabilityHandler = { handle in collected.append(err: handle.availableData) }
            process.terminationHandler = { process in
                out.fileHandleForReading.readabilityHandler = nil
                err.fileHandleForReading.readabilityHandler = nil
                collected.append(out: out.fileHandleForReading.readDataToEndOfFile())
                collected.append(err: err.fileHandleForReading.readDataToEndOfFile())
                let (o, e) = collected.texts
                continuation.resume(returning: (process.terminationStatus, o, e))
            }
            do {
                try process.run()
                // A hung az would stall every sign-in: stop it after 30 s (its exit status then says so).
                DispatchQueue.global().asyncAfter(deadline: .now() + 30) { if process.isRunning { process.terminate() } }
            } catch {
                continuation.resume(throwing: AuthenticationError(.azureCLI, "Cannot run '\(executable)': \(error)", hint: "Install the Azure CLI or put az on PATH."))
            }
        }
    }
}

/// Collects a child process's output from its pipe handlers (a lock-box).
final class OutputBox: @unchecked Sendable {
    // @unchecked: both buffers are only touched under `lock`.
    private let lock = NSLock()
    private var out = Data()
    private var err = Data()
    func append(out data: Data) { lock.lock(); out.append(data); lock.unlock() }
    func append(err data: Data) { lock.lock(); err.append(data); lock.unlock() }
    var texts: (String, String) {
        lock.lock()
        defer { lock.unlock() }
        return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }
}

/// `auto`, when the environment configures no mode but managed identity or az may work: tries each in order.
struct ChainedCredential: TokenCredential {
    let links: [any TokenCredential]
    var mode: AuthMode { .auto }
    var identity: String { links.map(\.identity).joined(separator: ", or ") }

    func getToken(scope: String) async throws -> AccessToken {
        var failures: [String] = []
        for link in links {
            do {
                return try await link.getToken(scope: scope)
            } catch let error as AuthenticationError {
                failures.append(error.description)
            }
        }
        throw AuthenticationError(.auto, "No sign-in worked. Tried: " + failures.joined(separator: "; "), hint: CredentialFactory.autoHint)
    }
}

// MARK: - Helpers

enum Base64URL {
    static func encode(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

enum PEM {
    /// The DER bytes of every `-----BEGIN {label}-----` block.
    static func blocks(_ text: String, label: String) -> [Data] {
        var result: [Data] = []
        var rest = Substring(text)
        let begin = "-----BEGIN \(label)-----"
        let end = "-----END \(label)-----"
        while let start = rest.range(of: begin), let stop = rest.range(of: end, range: start.upperBound..<rest.endIndex) {
            let base64 = rest[start.upperBound..<stop.lowerBound].filter { !$0.isWhitespace }
            if let data = Data(base64Encoded: String(base64)) { result.append(data) }
            rest = rest[stop.upperBound...]
        }
        return result
    }
}

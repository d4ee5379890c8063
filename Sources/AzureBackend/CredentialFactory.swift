import FactoryModel
import Foundation

/// Chooses and builds the credential for `--auth`, from the environment variables Microsoft's
/// azure-identity reads, so a CI set-up that works for `az` or the Azure SDKs works unchanged.
///
/// `auto` picks the first mode the environment configures, in this order:
/// 1. `client-secret` (`AZURE_CLIENT_SECRET`), 2. `client-certificate` (`AZURE_CLIENT_CERTIFICATE_PATH`),
/// 3. `workload-identity` (`AZURE_FEDERATED_TOKEN_FILE`), 4. `github-oidc` (`ACTIONS_ID_TOKEN_REQUEST_URL`),
/// 5. `azure-devops-oidc` (`SYSTEM_OIDCREQUESTURI` with `AZURESUBSCRIPTION_SERVICE_CONNECTION_ID`),
/// 6. `managed-identity` on App Service (`IDENTITY_ENDPOINT`);
/// and when none is configured, tries managed identity through IMDS (a short probe), then `az`.
public enum CredentialFactory {
    static let autoHint = "Set AZURE_TENANT_ID and AZURE_CLIENT_ID with AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE; in GitHub Actions give the job `id-token: write`; in Azure Pipelines use a workload-identity service connection; or run `az login`. See the README's 'Signing in to Azure'."

    public static func make(mode: AuthMode, profile: AzureCloudProfile, environment: [String: String], transport: any HTTPTransport,
                            clock: any FactoryClock) throws -> any TokenCredential {
        func env(_ name: String) -> String? {
            guard let v = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty else { return nil }
            return v
        }
        func required(_ names: [String], for mode: AuthMode) throws -> [String] {
            let missing = names.filter { env($0) == nil }
            guard missing.isEmpty else {
                throw AuthenticationError(mode, "\(mode.rawValue) needs \(missing.joined(separator: ", ")), which \(missing.count == 1 ? "is" : "are") not set.",
                                          hint: "Set \(names.joined(separator: ", ")); see the README's 'Signing in to Azure'.")
            }
            return names.map { env($0)! }
        }
        func endpoint(tenant: String) -> EntraTokenEndpoint {
            EntraTokenEndpoint(authorityHost: profile.authorityHost, tenantID: tenant, transport: transport)
        }
        let imdsHost = env("IMAGEFACTORY_IMDS_ENDPOINT") ?? "http://169.254.169.254"

        switch mode {
        case .clientSecret:
            let v = try required(["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"], for: mode)
            return ClientSecretCredential(endpoint: endpoint(tenant: v[0]), clientID: v[1], secret: v[2], clock: clock)
        case .clientCertificate:
            let v = try required(["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_CERTIFICATE_PATH"], for: mode)
            return try ClientCertificateCredential(endpoint: endpoint(tenant: v[0]), clientID: v[1], pemPath: v[2], clock: clock)
        case .workloadIdentity:
            let v = try required(["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE"], for: mode)
            return FederatedCredential(endpoint: endpoint(tenant: v[0]), clientID: v[1], source: .file(v[2]), mode: mode, clock: clock)
        case .githubOIDC:
            let v = try required(["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"], for: mode)
            return FederatedCredential(endpoint: endpoint(tenant: v[0]), clientID: v[1], source: .github(url: v[2], requestToken: v[3]), mode: mode, clock: clock)
        case .azureDevOpsOIDC:
            // The AzureCLI@2 task sets AZURESUBSCRIPTION_*; plain AZURE_* work too.
            guard let tenant = env("AZURESUBSCRIPTION_TENANT_ID") ?? env("AZURE_TENANT_ID"),
                  let client = env("AZURESUBSCRIPTION_CLIENT_ID") ?? env("AZURE_CLIENT_ID") else {
                throw AuthenticationError(mode, "azure-devops-oidc needs AZURESUBSCRIPTION_TENANT_ID and AZURESUBSCRIPTION_CLIENT_ID (or AZURE_TENANT_ID and AZURE_CLIENT_ID).",
                                          hint: "Use a workload-identity service connection in an AzureCLI@2 task, or set them from the connection's details.")
            }
            let v = try required(["SYSTEM_OIDCREQUESTURI", "SYSTEM_ACCESSTOKEN", "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"], for: mode)
            return FederatedCredential(endpoint: endpoint(tenant: tenant), clientID: client,
                                       source: .azureDevOps(requestURI: v[0], accessToken: v[1], serviceConnectionID: v[2]), mode: mode, clock: clock)
        case .managedIdentity:
            if let url = env("IDENTITY_ENDPOINT") {
                guard let header = env("IDENTITY_HEADER") else {
                    throw AuthenticationError(mode, "IDENTITY_ENDPOINT is set but IDENTITY_HEADER is not.", hint: "App Service sets both; set both or neither.")
                }
                return ManagedIdentityCredential(endpoint: .appService(url: url, header: header), clientID: env("AZURE_CLIENT_ID"),
                                                 transport: transport, clock: clock, timeout: 30)
            }
            return ManagedIdentityCredential(endpoint: .imds(host: imdsHost), clientID: env("AZURE_CLIENT_ID"), transport: transport, clock: clock, timeout: 30)
        case .azureCLI:
            guard let az = findExecutable("az", path: env("PATH")) else {
                throw AuthenticationError(mode, "The Azure CLI (az) is not on PATH.", hint: "Install it and run `az login`, or choose another --auth mode.")
            }
            return AzureCLICredential(executable: az, tenantID: env("AZURE_TENANT_ID"), clock: clock)
        case .auto:
            let configured: AuthMode?
            if env("AZURE_CLIENT_SECRET") != nil { configured = .clientSecret }
            else if env("AZURE_CLIENT_CERTIFICATE_PATH") != nil { configured = .clientCertificate }
            else if env("AZURE_FEDERATED_TOKEN_FILE") != nil { configured = .workloadIdentity }
            else if env("ACTIONS_ID_TOKEN_REQUEST_URL") != nil && env("AZURE_CLIENT_ID") != nil { configured = .githubOIDC }
            else if env("SYSTEM_OIDCREQUESTURI") != nil && env("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID") != nil { configured = .azureDevOpsOIDC }
            else if env("IDENTITY_ENDPOINT") != nil && env("IDENTITY_HEADER") != nil { configured = .managedIdentity }
            else { configured = nil }
            if let configured { return try make(mode: configured, profile: profile, environment: environment, transport: transport, clock: clock) }
            var links: [any TokenCredential] = [
                ManagedIdentityCredential(endpoint: .imds(host: imdsHost), clientID: env("AZURE_CLIENT_ID"), transport: transport, clock: clock, timeout: 2),
            ]
            if let az = findExecutable("az", path: env("PATH")) {
                links.append(AzureCLICredential(executable: az, tenantID: env("AZURE_TENANT_ID"), clock: clock))
            }
            return ChainedCredential(links: links)
        }
    }

    static func findExecutable(_ name: String, path: String?) -> String? {
        for directory in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// Tokens per scope, refreshed before they expire (five minutes, or half their life when shorter),
/// one request at a time per scope however many jobs ask at once, and dropped when a request
/// gets 401 so the next one signs in again.
public actor TokenCache {
    let credential: any TokenCredential
    let clock: any FactoryClock
    private var tokens: [String: (token: AccessToken, fetchedAt: Date)] = [:]
    private var pending: [String: Task<AccessToken, Error>] = [:]
    /// Tokens fetched so far (tests of refresh and coalescing read it).
    public private(set) var fetches = 0

    public init(credential: any TokenCredential, clock: any FactoryClock) {
        self.credential = credential
        self.clock = clock
    }

    public func token(scope: String) async throws -> String {
        let now = clock.now()
        if let cached = tokens[scope], !Self.needsRefresh(cached.token, fetchedAt: cached.fetchedAt, now: now) { return cached.token.token }
        if let task = pending[scope] { return try await task.value.token }
        let credential = self.credential
        let task = Task { try await credential.getToken(scope: scope) }
        pending[scope] = task
        defer { pending[scope] = nil }
        let fresh = try await task.value
        fetches += 1
        tokens[scope] = (fresh, now)
        return fresh.token
    }

    /// Forgets the token a request was refused with, so the next request gets a new one.
    public func invalidate(scope: String, token: String) {
        if tokens[scope]?.token.token == token { tokens[scope] = nil }
    }

    /// Five minutes before expiry, or half-way through the token's life when that is shorter.
    static func needsRefresh(_ token: AccessToken, fetchedAt: Date, now: Date) -> Bool {
        let lifetime = token.expiresOn.timeIntervalSince(fetchedAt)
        return token.expiresOn.timeIntervalSince(now) < min(300, lifetime / 2)
    }
}

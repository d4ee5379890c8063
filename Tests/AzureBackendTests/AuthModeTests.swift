import _CryptoExtras
@testable import AzureBackend
import FactoryModel
import Foundation
import LocalServe
import Testing
import X509

/// Each sign-in mode, configured only through the environment variables azure-identity reads,
/// signs in to `local serve`'s Entra, CI and managed-identity endpoints and makes an ARM call.
@Suite("Sign-in modes against local serve", .serialized)
struct AuthModeTests {
    static let tenant = "00000000-0000-0000-0000-000000000001"
    static let client = "11111111-0000-4000-8000-0000000000cc"

    /// An admin call to local serve (no token).
    static func admin(_ base: String, _ method: String, _ path: String, body: Data? = nil) async throws -> [String: Any] {
        let response = try await AsyncHTTPTransport.shared(caFile: nil).send(HTTPRequestData(method: method, url: URL(string: base + path)!,
                                                                                            headers: [("Content-Type", "application/json")], body: body), timeout: 30)
        #expect(response.status < 300, "\(method) \(path): \(response.status) \(String(decoding: response.body, as: UTF8.self))")
        return (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] ?? [:]
    }

    /// Signs in with `mode` and the given environment, then lists the factory's labs through ARM.
    static func signInAndList(_ served: ServedBackend, _ mode: AuthMode, _ extra: [String: String]) async throws -> (any TokenCredential, Int) {
        let base = served.backend.http.profile.armEndpoint.absoluteString
        var environment = ["AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": client, "IMAGEFACTORY_ARM_ENDPOINT": base, "AZURE_AUTHORITY_HOST": base,
                           "IMAGEFACTORY_IMDS_ENDPOINT": "http://127.0.0.1:9", "PATH": "/nonexistent"]
        for (k, v) in extra { environment[k] = v }
        let profile = try AzureCloudProfile.resolve(cloud: nil, armEndpoint: nil, environment: environment)
        let transport = try AsyncHTTPTransport.shared(caFile: nil)
        let credential = try CredentialFactory.make(mode: mode, profile: profile, environment: environment, transport: transport, clock: SystemClock())
        let http = AzureHTTPClient(profile: profile, transport: transport, credential: credential, clock: SystemClock(), maxConcurrentWrites: 4)
        let labs = try await AzureBackend(http: http).listLabs(subscriptionId: ServedBackend.subscription)
        return (credential, labs.count)
    }

    @Test("client-certificate: a PS256 assertion with the certificate's x5t#S256, registered with Entra")
    func clientCertificate() async throws {
        let served = try await ServedBackend.make()
        defer { served.close() }
        let base = served.backend.http.profile.armEndpoint.absoluteString
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let name = try DistinguishedName { CommonName("imagefactory ci") }
        let certificate = try Certificate(version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
                                          notValidBefore: Date().addingTimeInterval(-60), notValidAfter: Date().addingTimeInterval(3600), issuer: name,
                                          subject: name, signatureAlgorithm: .sha256WithRSAEncryption, extensions: Certificate.Extensions(),
                                          issuerPrivateKey: Certificate.PrivateKey(key))
        let pem = try certificate.serializeAsPEM().pemString
        _ = try await Self.admin(base, "PUT", "/_imagefactory/client-certificates/\(Self.client)", body: Data(pem.utf8))
        let file = served.directory.appendingPathComponent("client.pem")
        try (pem + "\n" + key.pemRepresentation + "\n").write(to: file, atomically: true, encoding: .utf8)
        let (credential, count) = try await Self.signInAndList(served, .auto, ["AZURE_CLIENT_CERTIFICATE_PATH": file.path])
        #expect(credential.mode == .clientCertificate, "auto picks the certificate from the environment")
        #expect(count == 2)
        // A certificate Entra does not know is refused with its code.
        let stranger = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let other = served.directory.appendingPathComponent("other.pem")
        try (pem + "\n" + stranger.pemRepresentation + "\n").write(to: other, atomically: true, encoding: .utf8)
        await #expect(throws: CloudError.self) { _ = try await Self.signInAndList(served, .clientCertificate, ["AZURE_CLIENT_CERTIFICATE_PATH": other.path]) }
    }

    @Test("workload-identity: the projected token file is read at each sign-in, so a rotated token is used")
    func workloadIdentity() async throws {
        let served = try await ServedBackend.make()
        defer { served.close() }
        let base = served.backend.http.profile.armEndpoint.absoluteString
        let body = try JSONSerialization.data(withJSONObject: ["issuer": "kubernetes", "subject": "system:serviceaccount:factory:imagefactory",
                                                              "audience": "api://AzureADTokenExchange", "lifetime": 3600])
        let token = try #require(try await Self.admin(base, "POST", "/_imagefactory/federated-tokens", body: body)["token"] as? String)
        let file = served.directory.appendingPathComponent("azure-identity-token")
        try token.write(to: file, atomically: true, encoding: .utf8)
        let (credential, count) = try await Self.signInAndList(served, .auto, ["AZURE_FEDERATED_TOKEN_FILE": file.path])
        #expect(credential.mode == .workloadIdentity && count == 2)
        // The kubelet rotates the file: an expired token in it is refused; a fresh one works again.
        let shortLived = try JSONSerialization.data(withJSONObject: ["issuer": "kubernetes", "subject": "s", "audience": "api://AzureADTokenExchange", "lifetime": 1])
        try (try await Self.admin(base, "POST", "/_imagefactory/federated-tokens", body: shortLived)["token"] as? String ?? "").write(to: file, atomically: true, encoding: .utf8)
        served.clock.advance(by: 5)  // the emulated Entra's time: the one-second token has expired
        await #expect(throws: (any Error).self) { _ = try await credential.getToken(scope: "https://management.azure.com/.default") }
        try token.write(to: file, atomically: true, encoding: .utf8)
        _ = try await credential.getToken(scope: "https://management.azure.com/.default")
    }

    @Test("github-oidc: GitHub's ID token request, exchanged for an Entra token")
    func githubOIDC() async throws {
        let served = try await ServedBackend.make()
        defer { served.close() }
        let base = served.backend.http.profile.armEndpoint.absoluteString
        let requestToken = try #require(try await Self.admin(base, "POST", "/_imagefactory/ci-request-tokens")["token"] as? String)
        let (credential, count) = try await Self.signInAndList(served, .auto, ["ACTIONS_ID_TOKEN_REQUEST_URL": "\(base)/_github/idtoken?api-version=2.0",
                                                                               "ACTIONS_ID_TOKEN_REQUEST_TOKEN": requestToken])
        #expect(credential.mode == .githubOIDC && count == 2)
        await #expect(throws: CloudError.self) {
            _ = try await Self.signInAndList(served, .githubOIDC, ["ACTIONS_ID_TOKEN_REQUEST_URL": "\(base)/_github/idtoken?api-version=2.0",
                                                                   "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "not-the-runner's"])
        }
    }

    @Test("azure-devops-oidc: the service connection's OIDC token from the pipeline, with the AzureCLI task's variables")
    func azureDevOpsOIDC() async throws {
        let served = try await ServedBackend.make()
        defer { served.close() }
        let base = served.backend.http.profile.armEndpoint.absoluteString
        let accessToken = try #require(try await Self.admin(base, "POST", "/_imagefactory/ci-request-tokens")["token"] as? String)
        let (credential, count) = try await Self.signInAndList(served, .auto, [
            "SYSTEM_OIDCREQUESTURI": "\(base)/_ado/oidctoken", "SYSTEM_ACCESSTOKEN": accessToken,
            "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": "5b8a2b3c-0000-4000-8000-000000000001",
            "AZURESUBSCRIPTION_CLIENT_ID": Self.client, "AZURESUBSCRIPTION_TENANT_ID": Self.tenant, "AZURE_CLIENT_ID": "", "AZURE_TENANT_ID": "",
        ])
        #expect(credential.mode == .azureDevOpsOIDC && count == 2)
    }

    @Test("managed-identity: IMDS at the configured host, and App Service's identity endpoint")
    func managedIdentity() async throws {
        let served = try await ServedBackend.make()
        defer { served.close() }
        let base = served.backend.http.profile.armEndpoint.absoluteString
        let (imds, count) = try await Self.signInAndList(served, .managedIdentity, ["IMAGEFACTORY_IMDS_ENDPOINT": base, "AZURE_CLIENT_ID": ""])
        #expect(imds.identity.contains("IMDS") && count == 2)
        let (auto, _) = try await Self.signInAndList(served, .auto, ["IMAGEFACTORY_IMDS_ENDPOINT": base, "AZURE_CLIENT_ID": ""])
        #expect(auto.mode == .auto, "with nothing configured, auto probes IMDS")
        let header = try #require(try await Self.admin(base, "POST", "/_imagefactory/ci-request-tokens")["token"] as? String)
        let (appService, _) = try await Self.signInAndList(served, .auto, ["IDENTITY_ENDPOINT": "\(base)/msi/token", "IDENTITY_HEADER": header])
        #expect(appService.mode == .managedIdentity && appService.identity.contains("App Service"))
    }

    @Test("azure-cli: `az account get-access-token` for each scope, with the tenant")
    func azureCLI() async throws {
        let served = try await ServedBackend.make()
        defer { served.close() }
        // A stand-in `az` that hands out a real token of local serve's and records how it was called.
        let token = try await served.backend.http.tokens.token(scope: "https://management.azure.com/.default")
        let bin = served.directory.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        let calls = served.directory.appendingPathComponent("az-calls")
        let script = """
            #!/bin/sh
            echo "$@" >> '\(calls.path)'
            echo '{"accessToken": "\(token)", "expires_on": \(Int(Date().timeIntervalSince1970) + 3000), "tokenType": "Bearer"}'
            """
        let az = bin.appendingPathComponent("az")
        try script.write(to: az, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: az.path)
        let (credential, count) = try await Self.signInAndList(served, .azureCLI, ["PATH": bin.path])
        #expect(credential.mode == .azureCLI && count == 2)
        let recorded = try String(contentsOf: calls, encoding: .utf8)
        #expect(recorded.contains("account get-access-token --scope https://management.azure.com/.default --output json --tenant \(Self.tenant)"), "\(recorded)")
    }

    @Test("a mode whose variables are missing says which ones; tokens are cached per scope and fetched once however many ask")
    func missingVariablesAndCaching() async throws {
        let profile = AzureCloudProfile.named(.azureCloud)
        let transport = try AsyncHTTPTransport.shared(caFile: nil)
        #expect(throws: AuthenticationError.self) {
            _ = try CredentialFactory.make(mode: .githubOIDC, profile: profile, environment: ["AZURE_CLIENT_ID": "x"], transport: transport, clock: SystemClock())
        }
        do {
            _ = try CredentialFactory.make(mode: .workloadIdentity, profile: profile, environment: [:], transport: transport, clock: SystemClock())
        } catch let error as AuthenticationError {
            #expect(error.message.contains("AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE"))
        }
        let credential = CountingCredential(lifetime: 3600)
        let cache = TokenCache(credential: credential, clock: SystemClock())
        try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<20 { group.addTask { try await cache.token(scope: "a") } }
            for try await token in group { #expect(token == "token-1") }
        }
        _ = try await cache.token(scope: "b")
        #expect(await credential.count == 2, "one sign-in per scope, shared by twenty concurrent requests")
        await cache.invalidate(scope: "a", token: "token-1")
        #expect(try await cache.token(scope: "a") == "token-3")
    }
}

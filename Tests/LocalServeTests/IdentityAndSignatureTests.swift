import _CryptoExtras
import Crypto
import FactoryModel
import Foundation
import LocalCloud
@testable import LocalServe
import Testing
import X509

// Clients are played by this file's own signers, written from Microsoft's documented formats: the
// emulator's verifiers are never reused here, so the two cannot agree by construction.

extension ServeFixture {
    /// Any request, as sent (no token added).
    func raw(_ method: String, _ target: String, headers: [(name: String, value: String)] = [], body: Data = Data(),
             scheme: String = "http") async -> ServeResponse {
        await service.respond(ServeRequest(method: method, target: target, headers: [("Host", "127.0.0.1:1")] + headers, body: body, scheme: scheme))
    }

    func assertionResponse(_ assertion: String, clientID: String = "app", tenant: String = "tenant") async -> ServeResponse {
        let form = ["grant_type": "client_credentials", "client_id": clientID, "scope": "https://management.azure.com/.default",
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": assertion]
        let body = form.map { "\($0.key)=\(ServeFixture.encode($0.value))" }.joined(separator: "&")
        return await raw("POST", "/\(tenant)/oauth2/v2.0/token", headers: [("Content-Type", "application/x-www-form-urlencoded")], body: Data(body.utf8))
    }

    func aadsts(_ response: ServeResponse) -> Int? { json(response)["error_codes"]?.array?.first?.int }

    var now: Int { Int(clock.now().timeIntervalSince1970) }

    /// A lab's storage account with container `box` holding blob `b.txt` (put with the storage token).
    func accountWithBlob(_ lab: String, content: String = "hello") async throws -> String {
        let account = try await createLab(lab)
        #expect(await blob("PUT", "/\(account)/box?restype=container").status == 201)
        #expect(await blob("PUT", "/\(account)/box/b.txt", headers: [("x-ms-blob-type", "BlockBlob")], body: Data(content.utf8)).status == 201)
        return account
    }

    func ciRequestToken() async -> String {
        json(await raw("POST", "/_imagefactory/ci-request-tokens"))["token"]?.string ?? ""
    }
}

/// A client's RSA certificate and its assertions, as MSAL builds them.
struct TestCertificate: Sendable {
    let key: _RSA.Signing.PrivateKey
    let pem: String
    let der: Data

    init() throws {
        key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let name = try DistinguishedName { CommonName("imagefactory test client") }
        let now = Date()
        let certificate = try Certificate(version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
                                          notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(86_400),
                                          issuer: name, subject: name, signatureAlgorithm: .sha256WithRSAEncryption,
                                          extensions: Certificate.Extensions(), issuerPrivateKey: Certificate.PrivateKey(key))
        pem = try certificate.serializeAsPEM().pemString
        let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        der = Data(base64Encoded: body)!
    }

    static func b64url(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    var sha256Thumbprint: String { Self.b64url(Data(SHA256.hash(data: der))) }
    var sha1Thumbprint: String { Self.b64url(Data(Insecure.SHA1.hash(data: der))) }

    /// A signed assertion; `header` and `claims` override the defaults MSAL would send.
    func assertion(clientID: String = "app", now: Int, alg: String = "RS256", header: [String: JSONValue]? = nil,
                   claims overrides: [String: JSONValue] = [:], signer: _RSA.Signing.PrivateKey? = nil) throws -> String {
        let head: JSONValue = .object(header ?? ["alg": .string(alg), "typ": "JWT", "x5t#S256": .string(sha256Thumbprint)])
        var claims: [String: JSONValue] = ["aud": "https://login.example/tenant/oauth2/v2.0/token", "iss": .string(clientID), "sub": .string(clientID),
                                           "jti": .string(UUID().uuidString), "nbf": .number(Double(now)), "exp": .number(Double(now + 600))]
        for (k, v) in overrides { claims[k] = v }
        let input = Self.b64url(head.data) + "." + Self.b64url(JSONValue.object(claims.filter { $0.value != .null }).data)
        let signature = try (signer ?? key).signature(for: SHA256.hash(data: Data(input.utf8)), padding: alg == "PS256" ? .PSS : .insecurePKCS1v1_5)
        return input + "." + Self.b64url(signature.rawRepresentation)
    }
}

// MARK: - Client certificate assertions

@Suite struct CertificateAssertionTests {
    @Test func assertionSignedWithARegisteredCertificateGetsAToken() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let cert = try TestCertificate()
        #expect(await f.raw("PUT", "/_imagefactory/client-certificates/app", body: Data(cert.pem.utf8)).status == 204)
        let rs256 = await f.assertionResponse(try cert.assertion(now: f.now))
        #expect(rs256.status == 200, "\(String(decoding: rs256.body, as: UTF8.self))")
        let token = try #require(f.json(rs256)["access_token"]?.string)
        #expect(await f.arm("GET", f.labPath, token: token).status == 200)
        // PS256, naming the certificate by its SHA-1 thumbprint (x5t) as older MSALs do.
        let ps256 = try cert.assertion(now: f.now, header: ["alg": "PS256", "typ": "JWT", "x5t": .string(cert.sha1Thumbprint)])
        #expect(await f.assertionResponse(ps256).status == 401, "PS256 header but an RS256 signature must fail")
        let realPS256 = try cert.assertion(now: f.now, alg: "PS256", header: ["alg": "PS256", "x5t": .string(cert.sha1Thumbprint)])
        #expect(await f.assertionResponse(realPS256).status == 200)
    }

    @Test func everyBrokenRuleHasEntrasCode() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let cert = try TestCertificate()
        let other = try TestCertificate()
        #expect(await f.raw("PUT", "/_imagefactory/client-certificates/app", body: Data(cert.pem.utf8)).status == 204)
        // The certificate is not registered for this client / at all.
        #expect(f.aadsts(await f.assertionResponse(try cert.assertion(clientID: "other", now: f.now), clientID: "other")) == 700027)
        #expect(f.aadsts(await f.assertionResponse(try other.assertion(now: f.now))) == 700027)
        // Names the registered certificate but is signed with another key.
        let forged = await f.assertionResponse(try cert.assertion(now: f.now, signer: other.key))
        #expect(forged.status == 401)
        #expect(f.aadsts(forged) == 700027)
        #expect(f.json(forged)["error"]?.string == "invalid_client")
        #expect(f.aadsts(await f.assertionResponse(try cert.assertion(now: f.now, claims: ["iss": "someone-else"]))) == 700021)
        #expect(f.aadsts(await f.assertionResponse(try cert.assertion(now: f.now, claims: ["aud": "https://login.example/tenant/oauth2/v2.0/authorize"]))) == 700023)
        #expect(f.aadsts(await f.assertionResponse(try cert.assertion(now: f.now, claims: ["aud": "https://login.example/other-tenant/oauth2/v2.0/token"]))) == 700023)
        #expect(f.aadsts(await f.assertionResponse(try cert.assertion(now: f.now, claims: ["nbf": .number(Double(f.now + 400))]))) == 700024)
        // Within Entra's five minutes of clock skew, a client whose clock runs ahead still signs in.
        #expect(await f.assertionResponse(try cert.assertion(now: f.now, claims: ["nbf": .number(Double(f.now + 120))])).status == 200)
        #expect(f.aadsts(await f.assertionResponse(try cert.assertion(now: f.now, claims: ["jti": .null]))) == 50027)
        #expect(f.aadsts(await f.assertionResponse(try cert.assertion(now: f.now, header: ["alg": "HS256", "x5t#S256": .string(cert.sha256Thumbprint)]))) == 50027)
        #expect(f.aadsts(await f.assertionResponse("not-a-jwt")) == 50027)
        // The v1 endpoint's URL is an audience Entra accepts too.
        #expect(await f.assertionResponse(try cert.assertion(now: f.now, claims: ["aud": "http://127.0.0.1:1/tenant/oauth2/token"])).status == 200)
        // Expiry: an assertion good now fails once the clock passes its exp.
        let assertion = try cert.assertion(now: f.now)
        #expect(await f.assertionResponse(assertion).status == 200)
        f.clock.advance(by: 601)
        #expect(f.aadsts(await f.assertionResponse(assertion)) == 700024)
    }

    @Test func registrationValidatesAndSurvivesARestart() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        #expect(await f.raw("PUT", "/_imagefactory/client-certificates/app", body: Data("not a certificate".utf8)).status == 400)
        let cert = try TestCertificate()
        // A PEM file with the private key beside the certificate, as AZURE_CLIENT_CERTIFICATE_PATH files are.
        let bundle = cert.key.pemRepresentation + "\n" + cert.pem
        #expect(await f.raw("PUT", "/_imagefactory/client-certificates/app", body: Data(bundle.utf8)).status == 204)
        let restarted = TokenAuthority(key: try TokenAuthority.signingKey(stateDirectory: f.directory), settings: .init(), stateDirectory: f.directory)
        let response = await restarted.token(tenant: "tenant", form: [
            "grant_type": "client_credentials", "client_id": "app", "scope": "https://storage.azure.com/.default",
            "client_assertion_type": TokenAuthority.assertionType, "client_assertion": try cert.assertion(now: f.now)], now: f.clock.now())
        #expect(response.status == 401, "the fixture's authority has no state directory, so this one starts empty")
        let persistent = TokenAuthority(key: try TokenAuthority.signingKey(stateDirectory: f.directory), settings: .init(), stateDirectory: f.directory)
        #expect(try await persistent.registerCertificates(clientID: "app", pem: cert.pem) == 1)
        let reloaded = TokenAuthority(key: try TokenAuthority.signingKey(stateDirectory: f.directory), settings: .init(), stateDirectory: f.directory)
        let again = await reloaded.token(tenant: "tenant", form: [
            "grant_type": "client_credentials", "client_id": "app", "scope": "https://storage.azure.com/.default",
            "client_assertion_type": TokenAuthority.assertionType, "client_assertion": try cert.assertion(now: f.now)], now: f.clock.now())
        #expect(again.status == 200)
        #expect(await f.raw("DELETE", "/_imagefactory/client-certificates/app").status == 204)
        #expect(f.aadsts(await f.assertionResponse(try cert.assertion(now: f.now))) == 700027)
    }
}

// MARK: - Federated tokens and the CI OIDC endpoints

@Suite struct FederatedTokenTests {
    func federated(_ f: ServeFixture, _ body: JSONValue) async -> (status: Int, token: String) {
        let response = await f.raw("POST", "/_imagefactory/federated-tokens", body: body.data)
        return (response.status, f.json(response)["token"]?.string ?? "")
    }

    @Test func tokensOfEveryLocalIssuerAreAcceptedAsAssertions() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        for (issuer, iss) in [("kubernetes", "https://kubernetes.default.svc.cluster.local"), ("github", "https://token.actions.githubusercontent.com"),
                              ("azure-devops", "https://vstoken.dev.azure.com/")] {
            let (status, token) = await federated(f, ["issuer": .string(issuer), "subject": "system:serviceaccount:ns:sa", "lifetime": 600])
            #expect(status == 200)
            #expect(JWT.claims(token)?["iss"]?.string?.hasPrefix(iss) == true)
            #expect(JWT.claims(token)?["aud"]?.string == "api://AzureADTokenExchange")
            let response = await f.assertionResponse(token, clientID: "workload")
            #expect(response.status == 200, "\(issuer): \(String(decoding: response.body, as: UTF8.self))")
        }
        #expect(await federated(f, ["issuer": "gitlab"]).status == 400)
    }

    @Test func audienceExpiryIssuerAndSignatureAreChecked() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let wrongAudience = await federated(f, ["issuer": "github", "audience": "https://management.azure.com/"]).token
        #expect(f.aadsts(await f.assertionResponse(wrongAudience)) == 700212)
        // A federated token is no access token, whatever its audience.
        #expect(await f.arm("GET", f.labPath, token: wrongAudience).status == 401)
        let short = await federated(f, ["lifetime": 60]).token
        #expect(await f.assertionResponse(short).status == 200)
        f.clock.advance(by: 61)
        #expect(f.aadsts(await f.assertionResponse(short)) == 700024)
        // Claims of a trusted issuer with a signature this cloud did not make.
        let parts = short.split(separator: ".")
        let forged = parts[0] + "." + parts[1] + "." + TestCertificate.b64url(Data(repeating: 7, count: 32))
        #expect(f.aadsts(await f.assertionResponse(String(forged))) == 700027)
        let unknown = TestCertificate.b64url((["alg": "RS256"] as JSONValue).data) + "." +
            TestCertificate.b64url((["iss": "https://issuer.example", "aud": "api://AzureADTokenExchange", "exp": .number(Double(f.now + 60))] as JSONValue).data) + ".c2ln"
        #expect(f.aadsts(await f.assertionResponse(unknown)) == 700211)
    }

    @Test func gitHubActionsIDTokenRequest() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let requestToken = await f.ciRequestToken()
        #expect(requestToken.hasPrefix("ifci."))
        // ACTIONS_ID_TOKEN_REQUEST_URL taken verbatim, `&audience=` appended.
        let url = "/_github/idtoken?api-version=2.0"
        let response = await f.raw("GET", url + "&audience=api%3A%2F%2FAzureADTokenExchange", headers: [("Authorization", "Bearer \(requestToken)")])
        #expect(response.status == 200)
        let value = try #require(f.json(response)["value"]?.string)
        #expect(f.json(response)["count"]?.int == value.count)
        let claims = try #require(JWT.claims(value))
        #expect(claims["iss"]?.string == "https://token.actions.githubusercontent.com")
        #expect(claims["sub"]?.string == "repo:contoso/images:ref:refs/heads/main")
        #expect(claims["aud"]?.string == "api://AzureADTokenExchange")
        #expect(await f.assertionResponse(value, clientID: "github-app").status == 200)
        let custom = await f.raw("GET", url + "&audience=my-audience", headers: [("Authorization", "Bearer \(requestToken)")])
        #expect(JWT.claims(f.json(custom)["value"]?.string ?? "")?["aud"]?.string == "my-audience")
        let defaulted = await f.raw("GET", url, headers: [("Authorization", "Bearer \(requestToken)")])
        #expect(JWT.claims(f.json(defaulted)["value"]?.string ?? "")?["aud"]?.string == "https://github.com/contoso")
        #expect(await f.raw("GET", url + "&audience=x").status == 401)
        #expect(await f.raw("GET", url + "&audience=x", headers: [("Authorization", "Bearer \(f.token)")]).status == 401)
        #expect(await f.raw("GET", url + "&audience=x", headers: [("Authorization", "Bearer ifci.forged.AAAA")]).status == 401)
    }

    @Test func azureDevOpsOIDCTokenRequest() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let accessToken = await f.ciRequestToken()
        let connection = "5c1b9f3e-0000-4000-8000-000000000001"
        // SYSTEM_OIDCREQUESTURI taken verbatim, `?api-version=7.1&serviceConnectionId=` appended.
        let target = "/_ado/oidctoken?api-version=7.1&serviceConnectionId=\(connection)"
        let headers: [(name: String, value: String)] = [("Authorization", "Bearer \(accessToken)"), ("Content-Type", "application/json")]
        let response = await f.raw("POST", target, headers: headers, body: Data("{}".utf8))
        #expect(response.status == 200)
        let token = try #require(f.json(response)["oidcToken"]?.string)
        let claims = try #require(JWT.claims(token))
        #expect(claims["iss"]?.string == "https://vstoken.dev.azure.com/\(FederatedIssuer.azureDevOpsOrganizationID)")
        #expect(claims["sub"]?.string == "sc://contoso/images/\(connection)")
        #expect(claims["aud"]?.string == "api://AzureADTokenExchange")
        #expect(await f.assertionResponse(token, clientID: "ado-app").status == 200)
        #expect(await f.raw("POST", "/_ado/oidctoken?api-version=7.1", headers: headers, body: Data("{}".utf8)).status == 400)
        #expect(await f.raw("POST", target, headers: [("Authorization", "Bearer nope")]).status == 401)
        #expect(await f.raw("POST", target).status == 401)
    }
}

// MARK: - Managed identity

@Suite struct ManagedIdentityTests {
    @Test func imdsNeedsTheMetadataHeaderAndIssuesUsableTokens() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let path = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F"
        let missing = await f.raw("GET", path)
        #expect(missing.status == 400)
        #expect(f.json(missing)["error"]?.string == "invalid_request")
        #expect(await f.raw("GET", path, headers: [("Metadata", "true"), ("X-Forwarded-For", "10.0.0.1")]).status == 400)
        #expect(await f.raw("GET", "/metadata/identity/oauth2/token?api-version=2018-02-01", headers: [("Metadata", "true")]).status == 400)
        let response = await f.raw("GET", path, headers: [("Metadata", "true")])
        #expect(response.status == 200)
        let body = f.json(response)
        for field in ["access_token", "client_id", "expires_in", "expires_on", "ext_expires_in", "not_before", "resource", "token_type"] {
            #expect(body[field]?.string != nil, "\(field) must be a string")
        }
        #expect(body["expires_on"]?.string == String(f.now + 3599))
        #expect(body["client_id"]?.string == LocalServeService.systemAssignedClientID)
        #expect(await f.arm("GET", f.labPath, token: body["access_token"]?.string ?? "").status == 200)
        // A user-assigned identity by client id; a storage token passes the Blob service's check.
        let account = try await f.accountWithBlob("MILab")
        let storage = await f.raw("GET", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fstorage.azure.com%2F&client_id=my-identity",
                                  headers: [("Metadata", "true")])
        #expect(f.json(storage)["client_id"]?.string == "my-identity")
        let read = await f.raw("GET", "/\(account)/box/b.txt", headers: [("x-ms-version", "2025-11-05"), ("Authorization", "Bearer \(f.json(storage)["access_token"]?.string ?? "")")])
        #expect(read.status == 200)
        // With x-ms-version it is a Blob request to an account named `metadata`, not IMDS.
        #expect(await f.raw("GET", path, headers: [("Metadata", "true"), ("x-ms-version", "2025-11-05")]).status == 404)
    }

    @Test func appServiceIdentityEndpointChecksTheIdentityHeader() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let path = "/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fstorage.azure.com"
        #expect(await f.raw("GET", path).status == 401)
        #expect(await f.raw("GET", path, headers: [("X-IDENTITY-HEADER", "guess")]).status == 403)
        let secret = await f.ciRequestToken()
        let response = await f.raw("GET", path, headers: [("X-IDENTITY-HEADER", secret)])
        #expect(response.status == 200)
        let body = f.json(response)
        #expect(body["expires_on"]?.string == String(f.now + 3599))
        #expect(body["token_type"]?.string == "Bearer" && body["resource"]?.string == "https://storage.azure.com")
        #expect(body["client_id"]?.string == LocalServeService.systemAssignedClientID)
        let account = try await f.accountWithBlob("AppSvcLab")
        let list = await f.raw("GET", "/\(account)/box?restype=container&comp=list", headers: [("x-ms-version", "2025-11-05"), ("Authorization", "Bearer \(body["access_token"]?.string ?? "")")])
        #expect(list.status == 200)
    }
}

// MARK: - Shared Key

/// Shared Key as a client signs it (version 2009-09-19 and later).
enum SharedKeySigner {
    static func signature(_ stringToSign: String, key: String) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: SymmetricKey(data: Data(base64Encoded: key)!))).base64EncodedString()
    }

    static func date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }

    /// Headers for a request to `path?query`, signed; `resourcePath` is the path the signer puts in the
    /// canonicalized resource after `/{account}`.
    static func headers(method: String, path: String, query: [(String, String)], headers: [(name: String, value: String)], account: String,
                        key: String, resourcePath: String? = nil) -> [(name: String, value: String)] {
        func h(_ name: String) -> String { headers.first { $0.name.lowercased() == name.lowercased() }?.value ?? "" }
        let length = h("Content-Length") == "0" ? "" : h("Content-Length")
        var lines = [method, h("Content-Encoding"), h("Content-Language"), length, h("Content-MD5"), h("Content-Type"), "",
                     h("If-Modified-Since"), h("If-Match"), h("If-None-Match"), h("If-Unmodified-Since"), h("Range")].joined(separator: "\n") + "\n"
        for (name, value) in headers.filter({ $0.name.lowercased().hasPrefix("x-ms-") }).sorted(by: { $0.name.lowercased() < $1.name.lowercased() }) {
            lines += "\(name.lowercased()):\(value)\n"
        }
        lines += "/\(account)\(resourcePath ?? path)"
        for (name, value) in query.sorted(by: { $0.0 < $1.0 }) { lines += "\n\(name):\(value)" }
        return headers + [("Authorization", "SharedKey \(account):\(signature(lines, key: key))")]
    }
}

@Suite struct SharedKeyTests {
    func send(_ f: ServeFixture, _ method: String, _ account: String, _ path: String, query: [(String, String)] = [], body: Data = Data(),
              extra: [(name: String, value: String)] = [], key: String? = nil, date: Date? = nil, resourcePath: String? = nil) async -> ServeResponse {
        let accountID = try? await f.service.cloud.storageAccount(named: account)
        var headers: [(name: String, value: String)] = [("x-ms-date", SharedKeySigner.date(date ?? f.clock.now())), ("x-ms-version", "2025-11-05")] + extra
        if !body.isEmpty { headers.append(("Content-Length", String(body.count))) }
        let full = "/\(account)\(path)"
        let signed = SharedKeySigner.headers(method: method, path: full, query: query, headers: headers, account: account,
                                             key: key ?? LocalCloud.storageAccountKeys(accountID!)[1], resourcePath: resourcePath)
        let q = query.map { "\($0.0)=\(ServeFixture.encode($0.1))" }.joined(separator: "&")
        return await f.raw(method, full + (q.isEmpty ? "" : "?" + q), headers: signed, body: body)
    }

    @Test func sharedKeyPutGetListWithEitherKeyAndEitherPathForm() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await f.createLab("KeyLab")
        #expect(await send(f, "PUT", account, "/box", query: [("restype", "container")]).status == 201)
        let put = await send(f, "PUT", account, "/box/dir/a%20b.txt", body: Data("shared".utf8), extra: [("x-ms-blob-type", "BlockBlob"), ("Content-Type", "text/plain")])
        #expect(put.status == 201, "\(String(decoding: put.body, as: UTF8.self))")
        let get = await send(f, "GET", account, "/box/dir/a%20b.txt")
        #expect(get.status == 200 && get.body == Data("shared".utf8))
        let list = await send(f, "GET", account, "/box", query: [("comp", "list"), ("restype", "container")])
        #expect(list.status == 200 && String(decoding: list.body, as: UTF8.self).contains("<Name>dir/a b.txt</Name>"))
        // Signed as on {account}.blob.core.windows.net: the path without the account segment.
        #expect(await send(f, "GET", account, "/box/dir/a%20b.txt", resourcePath: "/box/dir/a%20b.txt").status == 200)
    }

    @Test func wrongKeyStaleDateAndMissingDateAre403() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await f.accountWithBlob("BadKeyLab")
        let wrong = await send(f, "GET", account, "/box/b.txt", key: Data(repeating: 1, count: 64).base64EncodedString())
        #expect(wrong.status == 403)
        #expect(wrong.header("x-ms-error-code") == "AuthenticationFailed")
        let message = String(decoding: wrong.body, as: UTF8.self)
        #expect(message.contains("Server used following string to sign: &apos;GET") || message.contains("Server used following string to sign: 'GET"))
        #expect(message.contains("/\(account)/\(account)/box/b.txt"))
        #expect(await send(f, "GET", account, "/box/b.txt", date: f.clock.now().addingTimeInterval(-16 * 60)).status == 403)
        #expect(await send(f, "GET", account, "/box/b.txt", date: f.clock.now().addingTimeInterval(-14 * 60)).status == 200)
        let undated = await f.raw("GET", "/\(account)/box/b.txt", headers: [("x-ms-version", "2025-11-05"), ("Authorization", "SharedKey \(account):AAAA")])
        #expect(undated.status == 403)
        // A header signed with one value and sent with another.
        let signed = SharedKeySigner.headers(method: "GET", path: "/\(account)/box/b.txt", query: [], headers: [("x-ms-date", SharedKeySigner.date(f.clock.now())), ("x-ms-version", "2025-11-05")],
                                             account: account, key: LocalCloud.storageAccountKeys(try #require(await f.service.cloud.storageAccount(named: account)))[0])
        let tampered = signed.map { $0.name == "x-ms-version" ? ($0.name, "2024-11-04") : $0 }
        #expect(await f.raw("GET", "/\(account)/box/b.txt", headers: tampered).status == 403)
        #expect(await f.raw("GET", "/\(account)/box/b.txt", headers: signed).status == 200)
    }
}

// MARK: - SAS

/// SAS as a client signs it, from Microsoft's "Create a service SAS", "Create a user delegation SAS"
/// and "Create an account SAS" pages.
struct SASSigner {
    var fields: [String: String]

    func query() -> String {
        fields.sorted { $0.key < $1.key }.map { "\($0.key)=\(ServeFixture.encode($0.value))" }.joined(separator: "&")
    }

    func value(_ name: String) -> String { fields[name] ?? "" }

    static func sign(_ text: String, keyBase64: String) -> String {
        SharedKeySigner.signature(text, key: keyBase64)
    }

    /// A service SAS for a blob (sr=b) or container (sr=c), signed with an account key.
    static func service(account: String, container: String, blob: String?, permissions: String, start: String? = nil, expiry: String,
                        version: String, protocols: String? = nil, key: String) -> SASSigner {
        var s = SASSigner(fields: ["sv": version, "sp": permissions, "se": expiry, "sr": blob == nil ? "c" : "b"])
        if let start { s.fields["st"] = start }
        if let protocols { s.fields["spr"] = protocols }
        let resource = "/blob/\(account)/\(container)" + (blob.map { "/\($0)" } ?? "")
        var lines = [s.value("sp"), s.value("st"), s.value("se"), resource, s.value("si"), s.value("sip"), s.value("spr"), version, s.value("sr"), ""]
        if version >= "2020-12-06" { lines.append(s.value("ses")) }
        lines += ["", "", "", "", ""]
        s.fields["sig"] = sign(lines.joined(separator: "\n"), keyBase64: key)
        return s
    }

    /// A user delegation SAS for a blob, signed with a user delegation key.
    static func userDelegation(account: String, container: String, blob: String, permissions: String, expiry: String, version: String,
                               key: [String: String]) -> SASSigner {
        var s = SASSigner(fields: ["sv": version, "sp": permissions, "se": expiry, "sr": "b", "skoid": key["SignedOid"]!, "sktid": key["SignedTid"]!,
                                   "skt": key["SignedStart"]!, "ske": key["SignedExpiry"]!, "sks": key["SignedService"]!, "skv": key["SignedVersion"]!])
        var lines = [permissions, "", expiry, "/blob/\(account)/\(container)/\(blob)", s.value("skoid"), s.value("sktid"), s.value("skt"), s.value("ske"),
                     s.value("sks"), s.value("skv"), "", "", ""]
        if version >= "2025-07-05" { lines += ["", ""] }
        lines += ["", "", version, "b", "", ""]
        if version >= "2026-04-06" { lines += ["", ""] }
        lines += ["", "", "", "", ""]
        s.fields["sig"] = sign(lines.joined(separator: "\n"), keyBase64: key["Value"]!)
        return s
    }

    /// An account SAS for the Blob service.
    static func account(account: String, permissions: String, resourceTypes: String, expiry: String, version: String, key: String) -> SASSigner {
        var s = SASSigner(fields: ["sv": version, "sp": permissions, "ss": "b", "srt": resourceTypes, "se": expiry])
        var text = [account, permissions, "b", resourceTypes, "", expiry, "", "", version].map { $0 + "\n" }.joined()
        if version >= "2020-12-06" { text += "\n" }
        s.fields["sig"] = sign(text, keyBase64: key)
        return s
    }
}

@Suite struct SASTests {
    func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    func key(_ f: ServeFixture, _ account: String) async throws -> String {
        LocalCloud.storageAccountKeys(try #require(await f.service.cloud.storageAccount(named: account)))[0]
    }

    func get(_ f: ServeFixture, _ path: String, _ sas: SASSigner, scheme: String = "http") async -> ServeResponse {
        await f.raw("GET", "\(path)?\(sas.query())", headers: [("x-ms-version", "2025-11-05")], scheme: scheme)
    }

    /// Get User Delegation Key with the storage token; the XML's elements by name.
    func delegationKey(_ f: ServeFixture, _ account: String, expiry: Date, token: String? = nil) async -> (ServeResponse, [String: String]) {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><KeyInfo><Start>\(iso(f.clock.now()))</Start><Expiry>\(iso(expiry))</Expiry></KeyInfo>"
        let response = await f.raw("POST", "/\(account)?restype=service&comp=userdelegationkey",
                                   headers: [("x-ms-version", "2026-06-06"), ("Authorization", "Bearer \(token ?? f.storageToken)")], body: Data(body.utf8))
        var fields: [String: String] = [:]
        let xml = String(decoding: response.body, as: UTF8.self)
        for name in ["SignedOid", "SignedTid", "SignedStart", "SignedExpiry", "SignedService", "SignedVersion", "Value"] {
            if let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>") { fields[name] = String(xml[open.upperBound..<close.lowerBound]) }
        }
        return (response, fields)
    }

    @Test func serviceSASReadsForEachVersionAndChecksItsRules() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await f.accountWithBlob("SasLab")
        let k = try await key(f, account)
        let expiry = iso(f.clock.now().addingTimeInterval(3600))
        for version in ["2018-11-09", "2022-11-02", "2025-07-05", "2026-06-06"] {
            let sas = SASSigner.service(account: account, container: "box", blob: "b.txt", permissions: "r", expiry: expiry, version: version, key: k)
            let response = await get(f, "/\(account)/box/b.txt", sas)
            #expect(response.status == 200, "sv=\(version): \(String(decoding: response.body, as: UTF8.self))")
            #expect(response.body == Data("hello".utf8))
        }
        let sas = SASSigner.service(account: account, container: "box", blob: "b.txt", permissions: "r", expiry: expiry, version: "2022-11-02", key: k)
        // Tampered: another permission than signed.
        var tampered = sas
        tampered.fields["sp"] = "rw"
        let mismatch = await get(f, "/\(account)/box/b.txt", tampered)
        #expect(mismatch.status == 403 && mismatch.header("x-ms-error-code") == "AuthenticationFailed")
        #expect(String(decoding: mismatch.body, as: UTF8.self).contains("Signature did not match. String to sign used was rw"))
        // Another blob than signed.
        #expect(await get(f, "/\(account)/box/other.txt", sas).status == 403)
        // Write permission only: reading is not allowed.
        let writeOnly = SASSigner.service(account: account, container: "box", blob: "b.txt", permissions: "w", expiry: expiry, version: "2022-11-02", key: k)
        #expect(await get(f, "/\(account)/box/b.txt", writeOnly).header("x-ms-error-code") == "AuthorizationPermissionMismatch")
        // https only, used over http.
        let httpsOnly = SASSigner.service(account: account, container: "box", blob: "b.txt", permissions: "r", expiry: expiry, version: "2022-11-02", protocols: "https", key: k)
        #expect(await get(f, "/\(account)/box/b.txt", httpsOnly).header("x-ms-error-code") == "AuthorizationProtocolMismatch")
        #expect(await get(f, "/\(account)/box/b.txt", httpsOnly, scheme: "https").status == 200)
        // Not yet valid, then expired.
        let later = SASSigner.service(account: account, container: "box", blob: "b.txt", permissions: "r", start: iso(f.clock.now().addingTimeInterval(600)),
                                      expiry: expiry, version: "2022-11-02", key: k)
        #expect(await get(f, "/\(account)/box/b.txt", later).status == 403)
        f.clock.advance(by: 3601)
        #expect(await get(f, "/\(account)/box/b.txt", sas).status == 403)
    }

    @Test func containerAndAccountSAS() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await f.accountWithBlob("ScopeLab")
        let k = try await key(f, account)
        let expiry = iso(f.clock.now().addingTimeInterval(3600))
        let container = SASSigner.service(account: account, container: "box", blob: nil, permissions: "rl", expiry: expiry, version: "2025-07-05", key: k)
        let list = await f.raw("GET", "/\(account)/box?restype=container&comp=list&\(container.query())", headers: [("x-ms-version", "2025-11-05")])
        #expect(list.status == 200 && String(decoding: list.body, as: UTF8.self).contains("<Name>b.txt</Name>"))
        #expect(await get(f, "/\(account)/box/b.txt", container).status == 200)
        let blobOnly = SASSigner.service(account: account, container: "box", blob: "b.txt", permissions: "rl", expiry: expiry, version: "2025-07-05", key: k)
        #expect(await f.raw("GET", "/\(account)/box?restype=container&comp=list&\(blobOnly.query())", headers: [("x-ms-version", "2025-11-05")])
            .header("x-ms-error-code") == "AuthorizationResourceTypeMismatch")
        let accountSAS = SASSigner.account(account: account, permissions: "rl", resourceTypes: "sco", expiry: expiry, version: "2022-11-02", key: k)
        #expect(await get(f, "/\(account)/box/b.txt", accountSAS).status == 200)
        let containersOnly = SASSigner.account(account: account, permissions: "rl", resourceTypes: "c", expiry: expiry, version: "2022-11-02", key: k)
        #expect(await get(f, "/\(account)/box/b.txt", containersOnly).header("x-ms-error-code") == "AuthorizationResourceTypeMismatch")
    }

    @Test func userDelegationKeyAndSAS() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await f.accountWithBlob("UdLab")
        let (response, udk) = await delegationKey(f, account, expiry: f.clock.now().addingTimeInterval(7200))
        #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
        #expect(udk["SignedOid"] == TokenAuthority.objectID("app") && udk["SignedTid"] == "tenant" && udk["SignedService"] == "b")
        #expect(udk["SignedVersion"] == "2026-06-06")
        // The same window gives the same key (derived, not stored); more than 7 days is refused.
        #expect(await delegationKey(f, account, expiry: f.clock.now().addingTimeInterval(7200)).1["Value"] == udk["Value"])
        #expect(await delegationKey(f, account, expiry: f.clock.now().addingTimeInterval(8 * 86_400)).0.status == 400)
        #expect(await delegationKey(f, account, expiry: f.clock.now().addingTimeInterval(3600), token: f.token).0.status == 401)
        let expiry = iso(f.clock.now().addingTimeInterval(3600))
        for version in ["2020-12-06", "2022-11-02", "2025-07-05", "2026-06-06"] {
            let sas = SASSigner.userDelegation(account: account, container: "box", blob: "b.txt", permissions: "r", expiry: expiry, version: version, key: udk)
            let read = await get(f, "/\(account)/box/b.txt", sas)
            #expect(read.status == 200, "sv=\(version): \(String(decoding: read.body, as: UTF8.self))")
        }
        // A key claimed for another principal, or a forged key value, does not verify.
        var otherKey = udk
        otherKey["SignedOid"] = TokenAuthority.objectID("someone-else")
        #expect(await get(f, "/\(account)/box/b.txt", SASSigner.userDelegation(account: account, container: "box", blob: "b.txt", permissions: "r",
                                                                          expiry: expiry, version: "2025-07-05", key: otherKey)).status == 403)
        var forgedValue = udk
        forgedValue["Value"] = Data(repeating: 3, count: 32).base64EncodedString()
        #expect(await get(f, "/\(account)/box/b.txt", SASSigner.userDelegation(account: account, container: "box", blob: "b.txt", permissions: "r",
                                                                          expiry: expiry, version: "2025-07-05", key: forgedValue)).status == 403)
        // Shared Key cannot get a user delegation key.
        let sharedKey = SharedKeySigner.headers(method: "POST", path: "/\(account)", query: [("comp", "userdelegationkey"), ("restype", "service")],
                                                headers: [("x-ms-date", SharedKeySigner.date(f.clock.now())), ("x-ms-version", "2025-11-05")],
                                                account: account, key: try await key(f, account))
        #expect(await f.raw("POST", "/\(account)?restype=service&comp=userdelegationkey", headers: sharedKey,
                            body: Data("<KeyInfo><Expiry>\(expiry)</Expiry></KeyInfo>".utf8)).status == 403)
        // Once the key expires, its SAS stops working even if the SAS itself lasts longer.
        let longSAS = SASSigner.userDelegation(account: account, container: "box", blob: "b.txt", permissions: "r",
                                               expiry: iso(f.clock.now().addingTimeInterval(6 * 86_400)), version: "2025-07-05", key: udk)
        #expect(await get(f, "/\(account)/box/b.txt", longSAS).status == 200)
        f.clock.advance(by: 7201)
        #expect(await get(f, "/\(account)/box/b.txt", longSAS).status == 403)
    }

    @Test func crossAccountCopyNeedsAValidReadSAS() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let source = try await f.accountWithBlob("CopySource", content: "vhd bytes")
        let dest = try await f.createLab("CopyDest")
        #expect(await f.blob("PUT", "/\(dest)/dst?restype=container").status == 201)
        let (_, udk) = await delegationKey(f, source, expiry: f.clock.now().addingTimeInterval(3600))
        let expiry = iso(f.clock.now().addingTimeInterval(1800))
        let url = "http://127.0.0.1:1/\(source)/box/b.txt"
        func copy(_ sourceURL: String, to name: String) async -> ServeResponse {
            await f.blob("PUT", "/\(dest)/dst/\(name)", headers: [("x-ms-copy-source", sourceURL)])
        }
        let good = SASSigner.userDelegation(account: source, container: "box", blob: "b.txt", permissions: "r", expiry: expiry, version: "2026-06-06", key: udk)
        #expect(await copy("\(url)?\(good.query())", to: "ud.vhd").status == 202)
        let serviceSAS = SASSigner.service(account: source, container: "box", blob: "b.txt", permissions: "r", expiry: expiry, version: "2022-11-02",
                                           key: try await key(f, source))
        #expect(await copy("\(url)?\(serviceSAS.query())", to: "svc.vhd").status == 202)
        for (name, sourceURL) in [("none.vhd", url), ("forged.vhd", url + "?sv=2022-11-02&sr=b&sp=r&se=\(ServeFixture.encode(expiry))&sig=AAAA"),
                                  ("write.vhd", url + "?" + SASSigner.service(account: source, container: "box", blob: "b.txt", permissions: "w", expiry: expiry,
                                                                             version: "2022-11-02", key: try await key(f, source)).query())] {
            let refused = await copy(sourceURL, to: name)
            #expect(refused.status == 403 && refused.header("x-ms-error-code") == "CannotVerifyCopySource", "\(name)")
        }
        // A source in the same account needs no SAS.
        #expect(await f.blob("PUT", "/\(source)/box/same.vhd", headers: [("x-ms-copy-source", url)]).status == 202)
    }
}

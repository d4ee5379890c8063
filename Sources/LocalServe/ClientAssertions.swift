import _CryptoExtras
import Crypto
import Foundation
import X509

/// A certificate registered for a client id (`PUT /_imagefactory/client-certificates/{clientId}`), as a
/// certificate uploaded to an app registration: what a `client_assertion` signed with its private key
/// must name (`x5t#S256` or `x5t`) and verify against.
struct ClientCertificate: Sendable {
    let pem: String
    /// base64url of the SHA-256 of the certificate's DER, as MSAL writes `x5t#S256`.
    let sha256Thumbprint: String
    /// base64url of the SHA-1 of the DER (`x5t`), what older MSALs send.
    let sha1Thumbprint: String
    let publicKey: _RSA.Signing.PublicKey
    let notValidAfter: Date

    /// Every `CERTIFICATE` block of a PEM text (a file that also holds the private key, as
    /// `AZURE_CLIENT_CERTIFICATE_PATH` files often do, is fine: other blocks are ignored).
    static func parse(_ text: String) throws(CertificateError) -> [ClientCertificate] {
        let begin = "-----BEGIN CERTIFICATE-----"
        let end = "-----END CERTIFICATE-----"
        var found: [ClientCertificate] = []
        var rest = Substring(text)
        while let start = rest.range(of: begin), let stop = rest.range(of: end, range: start.upperBound..<rest.endIndex) {
            let body = rest[start.upperBound..<stop.lowerBound].filter { !$0.isWhitespace }
            guard let der = Data(base64Encoded: String(body)) else {
                throw CertificateError("A CERTIFICATE block is not base64.")
            }
            let certificate: Certificate
            do {
                certificate = try Certificate(derEncoded: Array(der))
            } catch {
                throw CertificateError("A CERTIFICATE block is not an X.509 certificate: \(error)")
            }
            guard let key = _RSA.Signing.PublicKey(certificate.publicKey) else {
                throw CertificateError("The certificate's key is not RSA; Entra verifies client assertions (RS256, PS256) with RSA certificates.")
            }
            let pem = begin + "\n" + der.base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed]) + "\n" + end + "\n"
            found.append(ClientCertificate(pem: pem, sha256Thumbprint: JWT.base64url(Data(SHA256.hash(data: der))),
                                           sha1Thumbprint: JWT.base64url(Data(Insecure.SHA1.hash(data: der))),
                                           publicKey: key, notValidAfter: certificate.notValidAfter))
            rest = rest[stop.upperBound...]
        }
        guard !found.isEmpty else { throw CertificateError("The body holds no PEM certificate (-----BEGIN CERTIFICATE-----).") }
        return found
    }

    /// A thumbprint as a client wrote it, in the form the registry keeps (base64url without padding;
    /// some clients pad, or use the standard alphabet).
    static func normalize(_ thumbprint: String) -> String {
        thumbprint.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

/// Why a certificate could not be registered, for the admin endpoint's 400.
struct CertificateError: Error, Sendable {
    let message: String
    init(_ message: String) { self.message = message }
}

/// The external OIDC issuers the local cloud stands in for, whose tokens a workload exchanges for an
/// Entra token (workload identity federation). Entra only accepts such a token as a client assertion
/// when its audience is `api://AzureADTokenExchange`.
public enum FederatedIssuer: String, Sendable, CaseIterable {
    case kubernetes
    case github
    case azureDevOps = "azure-devops"

    /// The audience Entra requires of every federated token.
    public static let exchangeAudience = "api://AzureADTokenExchange"
    /// The GitHub repository and Azure DevOps organization and project the local CI stands for.
    public static let owner = "contoso"
    public static let project = "images"
    /// Azure DevOps writes its organization's id into `iss`; a stable made-up one.
    public static let azureDevOpsOrganizationID = TokenAuthority.guid("imagefactory-local/azure-devops-organization")

    /// `iss` of this issuer's tokens.
    public var url: String {
        switch self {
        case .kubernetes: return "https://kubernetes.default.svc.cluster.local"
        case .github: return "https://token.actions.githubusercontent.com"
        case .azureDevOps: return "https://vstoken.dev.azure.com/\(Self.azureDevOpsOrganizationID)"
        }
    }

    /// The `sub` a token gets when the request names none.
    var defaultSubject: String {
        switch self {
        case .kubernetes: return "system:serviceaccount:imagefactory:builder"
        case .github: return "repo:\(Self.owner)/\(Self.project):ref:refs/heads/main"
        case .azureDevOps: return "sc://\(Self.owner)/\(Self.project)/imagefactory"
        }
    }

    init?(issuerURL: String) {
        guard let match = Self.allCases.first(where: { $0.url == issuerURL }) else { return nil }
        self = match
    }
}

/// Why a client assertion was refused: the pieces of Entra's error body.
struct AssertionFailure: Sendable {
    var status = 401
    var error = "invalid_client"
    var code: Int
    var description: String
}

extension TokenAuthority {
    /// The `kid` of federated tokens, so a reader can tell them from access tokens at a glance.
    static let federatedKeyID = "imagefactory-local-oidc"

    // MARK: Client certificates

    /// Registers the certificates of a client id, replacing any registered before (PUT semantics).
    /// Returns how many were registered.
    func registerCertificates(clientID: String, pem: String) throws(CertificateError) -> Int {
        let parsed = try ClientCertificate.parse(pem)
        certificates[clientID.lowercased()] = parsed
        if let directory = certificateDirectory {
            let record: JSONValue = ["clientId": .string(clientID), "certificates": .string(parsed.map(\.pem).joined())]
            do {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                try record.data.write(to: Self.certificateFile(directory, clientID), options: .atomic)
            } catch {
                throw CertificateError("The certificate was accepted but could not be saved in \(directory.path): \(error)")
            }
        }
        return parsed.count
    }

    /// Forgets the certificates of a client id; its certificate assertions fail from now on.
    func removeCertificates(clientID: String) {
        certificates[clientID.lowercased()] = nil
        if let directory = certificateDirectory { try? FileManager.default.removeItem(at: Self.certificateFile(directory, clientID)) }
    }

    static func certificateFile(_ directory: URL, _ clientID: String) -> URL {
        directory.appendingPathComponent(guid("client-certificates:" + clientID.lowercased()) + ".json")
    }

    /// The registrations kept in the state directory (unreadable files are skipped: they were never
    /// written whole, as writes are atomic).
    static func loadCertificates(from directory: URL?) -> [String: [ClientCertificate]] {
        guard let directory, let files = try? FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil) else { return [:] }
        var loaded: [String: [ClientCertificate]] = [:]
        for file in files where file.pathExtension == "json" {
            guard let data = try? Data(contentsOf: file), let record = JSONValue.parse(data),
                  let clientID = record["clientId"]?.string, let pem = record["certificates"]?.string,
                  let parsed = try? ClientCertificate.parse(pem) else { continue }
            loaded[clientID.lowercased()] = parsed
        }
        return loaded
    }

    // MARK: Client assertions

    /// Checks a `client_assertion` as Entra does: a JWT signed with a certificate registered for the
    /// client (it names the certificate with `x5t#S256` or `x5t`), or a federated token from one of the
    /// local OIDC issuers. nil when accepted.
    func verifyClientAssertion(_ assertion: String, clientID: String, tenant: String, endpoint: String, now: Date) -> AssertionFailure? {
        guard let header = JWT.header(assertion), let claims = JWT.claims(assertion) else {
            return AssertionFailure(code: 50027, description: "JWT token is invalid or malformed: the client assertion is not a compact JWS (header.claims.signature, base64url JSON).")
        }
        if header["x5t#S256"]?.string != nil || header["x5t"]?.string != nil {
            return verifyCertificateAssertion(assertion, header: header, claims: claims, clientID: clientID, tenant: tenant, endpoint: endpoint, now: now)
        }
        return verifyFederatedToken(assertion, claims: claims, now: now)
    }

    private func verifyCertificateAssertion(_ assertion: String, header: JSONValue, claims: JSONValue, clientID: String, tenant: String,
                                            endpoint: String, now: Date) -> AssertionFailure? {
        let alg = header["alg"]?.string ?? ""
        guard alg == "RS256" || alg == "PS256" else {
            return AssertionFailure(code: 50027, description: "Invalid JWT token. The client assertion is signed with '\(alg)'; certificate assertions are signed with RS256 or PS256.")
        }
        let s256 = header["x5t#S256"]?.string.map(ClientCertificate.normalize)
        let s1 = header["x5t"]?.string.map(ClientCertificate.normalize)
        let thumbprint = header["x5t#S256"]?.string ?? header["x5t"]?.string ?? ""
        let registered = certificates[clientID.lowercased()] ?? []
        guard let certificate = registered.first(where: { $0.sha256Thumbprint == s256 || $0.sha1Thumbprint == s1 }) else {
            return AssertionFailure(code: 700027, description: "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '\(thumbprint)', \(registered.count) certificate(s) registered for app '\(clientID)'. Register one with PUT /_imagefactory/client-certificates/\(clientID).]")
        }
        let parts = assertion.split(separator: ".", omittingEmptySubsequences: false)
        let input = Data((parts[0] + "." + parts[1]).utf8)
        guard let signature = JWT.decodeBase64url(parts[2]),
              certificate.publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: input),
                                                     padding: alg == "PS256" ? .PSS : .insecurePKCS1v1_5) else {
            return AssertionFailure(code: 700027, description: "Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '\(thumbprint)']")
        }
        guard claims["iss"]?.string == clientID, claims["sub"]?.string == clientID else {
            return AssertionFailure(code: 700021, description: "Client assertion application identifier doesn't match 'client_id' parameter: iss '\(claims["iss"]?.string ?? "")' and sub '\(claims["sub"]?.string ?? "")' must both be '\(clientID)'.")
        }
        let aud = claims["aud"]?.string ?? ""
        guard Self.namesTokenEndpoint(aud, tenant: tenant, endpoint: endpoint) else {
            return AssertionFailure(code: 700023, description: "Client assertion audience claim does not match Realm issuer: aud '\(aud)' must be the token endpoint '\(endpoint)'.")
        }
        if let failure = Self.checkLifetime(claims, now: now) { return failure }
        guard let jti = claims["jti"]?.string, !jti.isEmpty else {
            return AssertionFailure(code: 50027, description: "Invalid JWT token. The client assertion has no 'jti' claim.")
        }
        return nil
    }

    /// Entra takes the token endpoint's URL as the audience. Only the path is compared: the host a
    /// client reached the local cloud by (127.0.0.1, localhost, a forwarded port) may differ.
    static func namesTokenEndpoint(_ aud: String, tenant: String, endpoint: String) -> Bool {
        if !endpoint.isEmpty, aud == endpoint { return true }
        guard let path = URLComponents(string: aud)?.path.lowercased() else { return false }
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        let t = tenant.lowercased()
        return trimmed == "/\(t)/oauth2/v2.0/token" || trimmed == "/\(t)/oauth2/token"
    }

    /// Entra tolerates this much clock skew on a client's `nbf` (five minutes): a client whose clock
    /// runs a little ahead still signs in.
    static let clockSkew: Double = 300

    /// `exp` must be in the future and `nbf`, when present, not (within the clock skew).
    static func checkLifetime(_ claims: JSONValue, now: Date) -> AssertionFailure? {
        let current = now.timeIntervalSince1970
        guard let exp = claims["exp"]?.int else {
            return AssertionFailure(code: 50027, description: "Invalid JWT token. The assertion has no 'exp' claim.")
        }
        let nbf = claims["nbf"]?.int
        if Double(exp) <= current || (nbf.map { Double($0) - clockSkew > current } ?? false) {
            let from = nbf.map { Date(timeIntervalSince1970: Double($0)).ISO8601Format() } ?? "(no nbf)"
            return AssertionFailure(code: 700024, description: "Client assertion is not within its valid time range. Current time: \(now.ISO8601Format()), assertion valid from \(from), expiry time of assertion \(Date(timeIntervalSince1970: Double(exp)).ISO8601Format()).")
        }
        return nil
    }

    private func verifyFederatedToken(_ assertion: String, claims: JSONValue, now: Date) -> AssertionFailure? {
        let iss = claims["iss"]?.string ?? ""
        guard FederatedIssuer(issuerURL: iss) != nil else {
            let known = FederatedIssuer.allCases.map(\.url).joined(separator: "', '")
            return AssertionFailure(code: 700211, description: "No matching federated identity record found for presented assertion issuer '\(iss)'. The local cloud trusts '\(known)' (tokens from POST /_imagefactory/federated-tokens, /_github/idtoken, /_ado/oidctoken); a certificate assertion names its certificate with x5t#S256.")
        }
        guard JWT.verify(assertion, key: federationKey) != nil else {
            return AssertionFailure(code: 700027, description: "Client assertion failed signature validation: the token claims issuer '\(iss)' but was not signed by this local cloud's issuer (or by one with another state directory).")
        }
        let audiences = claims["aud"]?.array?.compactMap(\.string) ?? [claims["aud"]?.string].compactMap { $0 }
        guard audiences.contains(FederatedIssuer.exchangeAudience) else {
            return AssertionFailure(code: 700212, description: "No matching federated identity record found for presented assertion audience '\(audiences.joined(separator: ","))'. Federated tokens must have audience '\(FederatedIssuer.exchangeAudience)'.")
        }
        return Self.checkLifetime(claims, now: now)
    }

    // MARK: Federated tokens

    /// A token of one of the local OIDC issuers, as a Kubernetes service account, GitHub Actions or an
    /// Azure DevOps service connection would hand a workload.
    func federatedToken(issuer: FederatedIssuer, subject: String?, audience: String, lifetime: Int, now: Date,
                        extraClaims: [String: JSONValue] = [:]) -> String {
        let iat = Int(now.timeIntervalSince1970)
        var claims: [String: JSONValue] = [
            "iss": .string(issuer.url), "sub": .string(subject ?? issuer.defaultSubject), "aud": .string(audience),
            "iat": .number(Double(iat)), "nbf": .number(Double(iat)), "exp": .number(Double(iat + lifetime)),
            "jti": .string(UUID().uuidString.lowercased()),
        ]
        claims.merge(extraClaims) { own, _ in own }
        return JWT.sign(.object(claims), key: federationKey, keyID: Self.federatedKeyID)
    }

    // MARK: CI request tokens

    /// A new request token for the CI OIDC endpoints and App Service's identity endpoint (the values
    /// of `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, `SYSTEM_ACCESSTOKEN` and `IDENTITY_HEADER`). Signed, not
    /// stored: any process with the same state directory accepts it.
    nonisolated func ciRequestToken() -> String {
        let id = JWT.base64url(Data(SymmetricKey(size: .bits128).withUnsafeBytes { Data($0) }))
        return "ifci." + id + "." + JWT.base64url(Data(HMAC<SHA256>.authenticationCode(for: Data(id.utf8), using: SymmetricKey(data: ciRequestKey))))
    }

    /// Whether a token is one `ciRequestToken` made (with this state directory's key).
    nonisolated func isCIRequestToken(_ token: String) -> Bool {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "ifci", let mac = JWT.decodeBase64url(parts[2]) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Data(parts[1].utf8), using: SymmetricKey(data: ciRequestKey))
    }

    // MARK: User delegation keys

    /// The value of the user delegation key of a principal for a validity window: derived, not
    /// stored, so a SAS it signed verifies later from the SAS's own `skoid`, `sktid`, `skt` and `ske`.
    nonisolated func userDelegationKey(oid: String, tid: String, start: Date, expiry: Date) -> Data {
        let input = "\(oid.lowercased())|\(tid.lowercased())|\(Int(start.timeIntervalSince1970))|\(Int(expiry.timeIntervalSince1970))"
        return Data(HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: delegationKey)))
    }
}

import Foundation

/// The identity providers a workload meets before Entra, on the same port: managed identity (the VM's
/// IMDS and App Service's identity endpoint) and the OIDC token requests of GitHub Actions and Azure
/// DevOps. Each answers in its own service's shape, so clients' real code paths run unchanged with
/// only the endpoint pointed here.
extension LocalServeService {
    /// The client id of the "VM's" system-assigned identity (stable, made up).
    static let systemAssignedClientID = TokenAuthority.guid("imagefactory-local/system-assigned-identity")
    /// Lifetimes of the CI OIDC tokens (GitHub's and Azure DevOps' are minutes, not an hour).
    static let gitHubTokenLifetime = 300
    static let azureDevOpsTokenLifetime = 600

    // MARK: Managed identity

    /// IMDS (`GET /metadata/identity/oauth2/token`) and App Service (`GET /msi/token`), answered only
    /// on these exact paths and without `x-ms-version`: `metadata` and `msi` are valid storage account
    /// names, and Blob requests always carry `x-ms-version`. nil for every other request.
    func managedIdentity(_ request: ServeRequest, now: Date) async -> ServeResponse? {
        guard request.header("x-ms-version") == nil else { return nil }
        let path = request.segments.map { $0.lowercased() }
        if path == ["metadata", "identity", "oauth2", "token"] { return await imdsToken(request, now: now) }
        if path == ["msi", "token"] { return await appServiceToken(request, now: now) }
        return nil
    }

    /// The client id a managed identity request asks for: a user-assigned identity by `client_id`,
    /// `object_id` or resource id (`msi_res_id` on IMDS, `mi_res_id` on App Service), else the
    /// system-assigned one. Every user-assigned identity a client names exists here.
    private func managedIdentityClientID(_ request: ServeRequest) -> String {
        if let id = request.query("client_id"), !id.isEmpty { return id }
        if let oid = request.query("object_id"), !oid.isEmpty { return TokenAuthority.guid("imagefactory-local/mi-object/" + oid.lowercased()) }
        if let res = request.query("msi_res_id") ?? request.query("mi_res_id"), !res.isEmpty {
            return TokenAuthority.guid("imagefactory-local/mi-resource/" + res.lowercased())
        }
        return Self.systemAssignedClientID
    }

    private func imdsToken(_ request: ServeRequest, now: Date) async -> ServeResponse {
        func bad(_ error: String, _ description: String) -> ServeResponse {
            .json(400, ["error": .string(error), "error_description": .string(description)])
        }
        guard request.method == "GET" else {
            return .json(405, ["error": "method_not_allowed", "error_description": .string("IMDS's token endpoint takes GET, not \(request.method).")])
        }
        // IMDS refuses requests that went through a proxy: the token is for this machine only.
        guard request.header("X-Forwarded-For") == nil else {
            return bad("invalid_request", "Request contains X-Forwarded-For header: IMDS does not answer proxied requests.")
        }
        guard request.header("Metadata")?.lowercased() == "true" else {
            return bad("invalid_request", "Required metadata header not specified")
        }
        guard let version = request.query("api-version"), !version.isEmpty else {
            return bad("invalid_request", "Required query variable 'api-version' is missing")
        }
        guard let resource = request.query("resource"), !resource.isEmpty else {
            return bad("invalid_request", "Required audience parameter not specified")
        }
        let clientID = managedIdentityClientID(request)
        let issued = await tokens.accessToken(tenant: settings.tenant, clientID: clientID, resource: resource, now: now)
        let expiresOn = issued.issuedAt + issued.lifetime
        return .json(200, [
            "access_token": .string(issued.token), "refresh_token": "", "client_id": .string(clientID),
            "expires_in": .string(String(issued.lifetime)), "ext_expires_in": .string(String(issued.lifetime)),
            "expires_on": .string(String(expiresOn)), "not_before": .string(String(issued.issuedAt)),
            "resource": .string(resource), "token_type": "Bearer",
        ])
    }

    /// App Service's identity endpoint (api-version 2019-08-01): `X-IDENTITY-HEADER` must be the
    /// `IDENTITY_HEADER` secret, here a CI request token from `POST /_imagefactory/ci-request-tokens`.
    private func appServiceToken(_ request: ServeRequest, now: Date) async -> ServeResponse {
        func fail(_ status: Int, _ message: String) -> ServeResponse {
            .json(status, ["statusCode": .number(Double(status)), "message": .string(message)])
        }
        guard request.method == "GET" else { return fail(405, "The identity endpoint takes GET, not \(request.method).") }
        guard let header = request.header("X-IDENTITY-HEADER"), !header.isEmpty else {
            return fail(401, "The X-IDENTITY-HEADER header is missing: send the value of IDENTITY_HEADER.")
        }
        guard tokens.isCIRequestToken(header) else {
            return fail(403, "The X-IDENTITY-HEADER header is not this endpoint's IDENTITY_HEADER (get one from POST /_imagefactory/ci-request-tokens).")
        }
        guard request.query("api-version") == "2019-08-01" else {
            return fail(400, "api-version '\(request.query("api-version") ?? "")' is not supported: use 2019-08-01.")
        }
        guard let resource = request.query("resource"), !resource.isEmpty else {
            return fail(400, "The 'resource' query parameter is required.")
        }
        let clientID = managedIdentityClientID(request)
        let issued = await tokens.accessToken(tenant: settings.tenant, clientID: clientID, resource: resource, now: now)
        return .json(200, ["access_token": .string(issued.token), "expires_on": .string(String(issued.issuedAt + issued.lifetime)),
                           "resource": .string(resource), "token_type": "Bearer", "client_id": .string(clientID)])
    }

    // MARK: CI OIDC

    /// The bearer token of a CI OIDC request, when it is one of this cloud's CI request tokens.
    private func ciRequestBearer(_ request: ServeRequest) -> Bool {
        let parts = (request.header("Authorization") ?? "").split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        return tokens.isCIRequestToken(String(parts[1]).trimmingCharacters(in: .whitespaces))
    }

    /// `GET /_github/idtoken?api-version=2.0&audience=X`: GitHub Actions' OIDC token request
    /// (`ACTIONS_ID_TOKEN_REQUEST_URL`, with `ACTIONS_ID_TOKEN_REQUEST_TOKEN` as bearer). Answers
    /// `{"count", "value"}`; without `audience` the token's audience is the owner's URL, as GitHub's.
    func gitHubIDToken(_ request: ServeRequest, now: Date) async -> ServeResponse {
        guard request.segments.count == 2, request.segments[1].lowercased() == "idtoken" else {
            return .json(404, ["message": .string("Not Found: the local GitHub OIDC endpoint is GET /_github/idtoken?api-version=2.0&audience=...")])
        }
        guard request.method == "GET" else { return .json(405, ["message": .string("The OIDC token request takes GET, not \(request.method).")]) }
        guard ciRequestBearer(request) else {
            return .json(401, ["message": "Bad credentials: send 'Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN' (a token from POST /_imagefactory/ci-request-tokens)."])
        }
        let owner = FederatedIssuer.owner
        let repository = "\(owner)/\(FederatedIssuer.project)"
        let audience = request.query("audience").flatMap { $0.isEmpty ? nil : $0 } ?? "https://github.com/\(owner)"
        let runID = String(Int(now.timeIntervalSince1970))
        let extra: [String: JSONValue] = [
            "repository": .string(repository), "repository_owner": .string(owner), "ref": "refs/heads/main", "ref_type": "branch",
            "sha": "0000000000000000000000000000000000000000", "event_name": "push", "workflow": "images", "actor": "imagefactory",
            "run_id": .string(runID), "run_attempt": "1", "runner_environment": "github-hosted",
            "job_workflow_ref": .string("\(repository)/.github/workflows/images.yml@refs/heads/main"),
        ]
        let token = await tokens.federatedToken(issuer: .github, subject: nil, audience: audience, lifetime: Self.gitHubTokenLifetime,
                                                now: now, extraClaims: extra)
        return .json(200, ["count": .number(Double(token.count)), "value": .string(token)])
    }

    /// `POST /_ado/oidctoken?api-version=7.1&serviceConnectionId=GUID`: Azure DevOps' OIDC token
    /// request (`SYSTEM_OIDCREQUESTURI`, with `SYSTEM_ACCESSTOKEN` as bearer). Answers `{"oidcToken"}`
    /// whose subject names the service connection (`sc://{org}/{project}/{serviceConnectionId}`).
    func azureDevOpsOIDCToken(_ request: ServeRequest, now: Date) async -> ServeResponse {
        guard request.segments.count == 2, request.segments[1].lowercased() == "oidctoken" else {
            return .json(404, ["message": .string("The local Azure DevOps OIDC endpoint is POST /_ado/oidctoken?api-version=7.1&serviceConnectionId=...")])
        }
        guard request.method == "POST" else { return .json(405, ["message": .string("The OIDC token request takes POST, not \(request.method).")]) }
        guard ciRequestBearer(request) else {
            return .json(401, ["message": "TF400813: The user is not authorized to access this resource: send 'Authorization: Bearer $SYSTEM_ACCESSTOKEN' (a token from POST /_imagefactory/ci-request-tokens)."])
        }
        guard let version = request.query("api-version"), !version.isEmpty else {
            return .json(400, ["message": "No api-version was supplied for the POST request. Use api-version=7.1."])
        }
        guard let connection = request.query("serviceConnectionId"), !connection.isEmpty else {
            return .json(400, ["message": "The serviceConnectionId query parameter is required: it names the service connection the token is for."])
        }
        if !request.body.isEmpty, JSONValue.parse(request.body)?.object == nil {
            return .json(400, ["message": "The request body must be a JSON object (or empty)."])
        }
        let subject = "sc://\(FederatedIssuer.owner)/\(FederatedIssuer.project)/\(connection)"
        let token = await tokens.federatedToken(issuer: .azureDevOps, subject: subject, audience: FederatedIssuer.exchangeAudience,
                                                lifetime: Self.azureDevOpsTokenLifetime, now: now)
        return .json(200, ["oidcToken": .string(token)])
    }

    // MARK: Admin

    /// `PUT` / `DELETE /_imagefactory/client-certificates/{clientId}`: the certificates a client's
    /// certificate assertions are checked against (the body is PEM; a private key beside it is ignored).
    func clientCertificatesAdmin(_ request: ServeRequest, clientID: String) async -> ServeResponse {
        switch request.method {
        case "PUT":
            do {
                _ = try await tokens.registerCertificates(clientID: clientID, pem: String(decoding: request.body, as: UTF8.self))
                return ServeResponse(status: 204)
            } catch {
                return .armError(400, "InvalidCertificate", error.message)
            }
        case "DELETE":
            await tokens.removeCertificates(clientID: clientID)
            return ServeResponse(status: 204)
        default:
            return .armError(405, "MethodNotAllowed", "Client certificates take PUT (the PEM certificate as the body) and DELETE.")
        }
    }

    /// `POST /_imagefactory/federated-tokens`: a token of a local OIDC issuer, as a workload would be
    /// handed one (`AZURE_FEDERATED_TOKEN_FILE`, a CI's OIDC token).
    func federatedTokenAdmin(_ request: ServeRequest, now: Date) async -> ServeResponse {
        let body = request.body.isEmpty ? JSONValue.object([:]) : (JSONValue.parse(request.body) ?? .null)
        guard body.object != nil else {
            return .armError(400, "InvalidRequestContent", "The body must be JSON: {\"subject\", \"audience\", \"issuer\": \"kubernetes\"|\"github\"|\"azure-devops\", \"lifetime\": seconds}.")
        }
        let issuerName = body["issuer"]?.string ?? FederatedIssuer.kubernetes.rawValue
        guard let issuer = FederatedIssuer(rawValue: issuerName) else {
            return .armError(400, "InvalidParameter", "issuer '\(issuerName)' is not one of kubernetes, github, azure-devops.")
        }
        let lifetime = body["lifetime"]?.int ?? 3600
        guard (1...86_400).contains(lifetime) else {
            return .armError(400, "InvalidParameter", "lifetime must be 1 to 86400 seconds.")
        }
        let audience = body["audience"]?.string ?? FederatedIssuer.exchangeAudience
        let token = await tokens.federatedToken(issuer: issuer, subject: body["subject"]?.string, audience: audience, lifetime: lifetime, now: now)
        return .json(200, ["token": .string(token), "issuer": .string(issuer.url), "subject": .string(body["subject"]?.string ?? issuer.defaultSubject),
                           "audience": .string(audience), "expiresOn": .number(Double(Int(now.timeIntervalSince1970) + lifetime))])
    }
}

import ArgumentParser
import FactoryModel
import Foundation
import LocalCloud
import LocalServe

/// `imagefactory local serve`: the local cloud's state over Azure's REST APIs on loopback (ARM,
/// an Entra-style token endpoint and the Blob service), so Azure's SDKs, `az rest` and the Azure
/// backend's tests can run without a subscription.
struct LocalServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the local cloud over Azure's REST APIs (ARM, tokens, Blob) on 127.0.0.1.",
        discussion: """
            One port serves ARM (/subscriptions/...), the token endpoint (/{tenant}/oauth2/v2.0/token: client \
            secret, certificate assertion or federated token), managed identity (IMDS /metadata/identity/oauth2/token, \
            App Service /msi/token), CI OIDC token requests (/_github/idtoken, /_ado/oidctoken) and the Blob service \
            of every lab's storage account (/{account}/{container}/{blob}: bearer token, Shared Key or SAS). \
            Admin endpoints under /_imagefactory register client certificates and issue federated and CI request \
            tokens. The same state directory as every other command is used; \
            IMAGEFACTORY_LOCAL_LATENCY, IMAGEFACTORY_LOCAL_FAULTS and IMAGEFACTORY_LOCAL_THROTTLE apply. \
            Stop it with Ctrl-C.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var backend: BackendOptions

    @Option(help: ArgumentHelp("Port on 127.0.0.1; 0 picks a free one (printed).", valueName: "n"))
    var port: Int = 7071

    @Flag(help: "Serve https with a self-signed certificate (made once in the state directory; its path is printed).")
    var tls: Bool = false

    @Option(help: ArgumentHelp("Items per page of ARM lists (default 100) and Blob lists (default 5,000); small values exercise clients' nextLink and NextMarker paging.", valueName: "n"))
    var pageSize: Int?

    @Option(help: ArgumentHelp("Lifetime of issued tokens in seconds (short values exercise clients' token refresh).", valueName: "seconds"))
    var tokenLifetime: Int = 3599

    @Option(help: ArgumentHelp("The tenant id written into tokens.", valueName: "id"))
    var tenant: String = "00000000-0000-0000-0000-000000000001"

    @Flag(help: "Do not log each request to standard error.")
    var quiet: Bool = false

    func validate() throws {
        try backend.validateLocal()
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535.") }
        guard (pageSize ?? 1) >= 1 else { throw ValidationError("--page-size must be at least 1.") }
        guard tokenLifetime >= 1 else { throw ValidationError("--token-lifetime must be at least 1 second.") }
    }

    func run() async throws {
        do {
            let environment = ProcessInfo.processInfo.environment
            let directory = backend.stateDirectory(repositoryPath: try backend.localRepositoryPath(repository))
            var settings = try LocalCloudSettings.resolve(stateDirectory: directory, environment: environment)
            // ARM throttles at its front door: the server applies the subscription write limit per
            // request, so the cloud underneath must not count the same writes a second time.
            let throttle = settings.throttle
            settings.throttle = .off
            let cloud: LocalCloud
            do {
                cloud = try LocalCloud(stateDirectory: directory, settings: settings)
            } catch {
                throw FactoryError(.backendUnavailable, "Cannot open the local cloud in \(directory.path): \(error)",
                                   hint: "Check the directory is writable, or pass --state-dir.")
            }
            let tokenSettings = TokenAuthority.Settings(lifetime: Double(tokenLifetime),
                                                        requiredClientSecret: environment["IMAGEFACTORY_LOCAL_CLIENT_SECRET"].flatMap { $0.isEmpty ? nil : $0 })
            let tokens = TokenAuthority(key: try TokenAuthority.signingKey(stateDirectory: directory), settings: tokenSettings,
                                        stateDirectory: directory)
            let service = LocalServeService(cloud: cloud, settings: LocalServeSettings(pageSize: pageSize ?? 100, throttle: throttle, tenant: tenant, blobPageSize: pageSize ?? 5000),
                                            tokens: tokens)
            var tlsFiles: LocalServer.TLSFiles?
            if tls {
                let files = try SelfSignedCertificate.ensure(in: directory)
                tlsFiles = LocalServer.TLSFiles(certificatePath: files.certificatePath, privateKeyPath: files.privateKeyPath)
            }
            let server = LocalServer(service: service, port: port, tls: tlsFiles)
            let scheme = tls ? "https" : "http"
            let tenant = self.tenant
            let quiet = self.quiet
            let certificatePath = tlsFiles?.certificatePath
            try await server.run(onListening: { bound in
                let base = "\(scheme)://127.0.0.1:\(bound)"
                Console.out("Local cloud in \(directory.path)")
                Console.out("Listening on \(base)")
                Console.out("  ARM:    \(base)/subscriptions/...")
                Console.out("  tokens: \(base)/\(tenant)/oauth2/v2.0/token (authority \(base)/\(tenant))")
                Console.out("  Blob:   \(base)/{storage account}/{container}/{blob}")
                Console.out("  managed identity: \(base)/metadata/identity/oauth2/token (AZURE_POD_IDENTITY_AUTHORITY_HOST=\(base)), \(base)/msi/token (IDENTITY_ENDPOINT)")
                Console.out("  CI OIDC: \(base)/_github/idtoken?api-version=2.0 (ACTIONS_ID_TOKEN_REQUEST_URL), \(base)/_ado/oidctoken (SYSTEM_OIDCREQUESTURI)")
                if let certificatePath { Console.out("  TLS certificate: \(certificatePath)") }
            }, onRequest: { served in
                if !quiet { Console.err("\(served.method) \(served.path) -> \(served.status) (\(Int(served.seconds * 1000)) ms)") }
            })
        } catch {
            throw ErrorMapper.report(error, ci: CIMode.detect())
        }
    }
}

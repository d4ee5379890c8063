import Crypto
import FactoryModel
import Foundation

/// The api-versions the backend calls: the newest stable version of each provider's spec
/// (Azure/azure-rest-api-specs; the extracts and their provenance are in the tests' `Specs/`).
public enum AzureAPIVersions {
    public static let devTestLabs = "2018-09-15"
    public static let deployments = "2026-09-01"
    public static let computeVMs = "2026-04-01"
    public static let disks = "2026-03-02"
    public static let galleries = "2026-03-03"
    public static let storage = "2026-09-01"
    public static let authorization = "2022-04-01"
}

/// How Blob requests are authorized (`--storage-auth`).
public enum StorageAuthMode: String, Sendable, CaseIterable {
    /// Entra tokens for the storage scope (needs a Storage Blob Data role); no key is ever read.
    case entra
    /// The account key from `listKeys`, with Shared Key signing (needs the listKeys action).
    case key
}

/// The factory's `CloudBackend` on Azure: DevTest Labs, Resources, Compute and Storage through ARM,
/// and the Blob service of each lab's storage account, all through one `AzureHTTPClient`.
///
/// Long-running operations come back as handles whose id says how to poll them:
/// `async <url>` (ARM's `Azure-AsyncOperation`), `location <url>` (`Location`), or
/// `resource <url>` (the resource's own `provisioningState`). Nothing secret is in an id.
public final class AzureBackend: CloudBackend {
    public let http: AzureHTTPClient
    public let storageAuth: StorageAuthMode
    let accounts: StorageAccountDirectory

    public init(http: AzureHTTPClient, storageAuth: StorageAuthMode = .entra) {
        self.http = http
        self.storageAuth = storageAuth
        accounts = StorageAccountDirectory()
    }

    /// Who the backend signs in as (ids only), for messages and `doctor`.
    public var identity: String { http.tokens.credential.identity }

    // MARK: ARM plumbing

    static let pathAllowed: CharacterSet = {
        var set = CharacterSet.alphanumerics
        set.insert(charactersIn: "-._~/()$,;=:@!*'")
        return set
    }()

    func armURL(_ path: String, apiVersion: String, query: [(String, String)] = []) throws -> URL {
        let encodedPath = path.addingPercentEncoding(withAllowedCharacters: Self.pathAllowed) ?? path
        let items = [("api-version", apiVersion)] + query
        let text = http.profile.armEndpoint.absoluteString + encodedPath + "?" + items.map { "\($0.0)=\(Self.queryEncode($0.1))" }.joined(separator: "&")
        guard let url = URL(string: text) else { throw CloudError(status: 400, code: "InvalidURL", message: "Cannot form a URL for \(path).") }
        return url
    }

    static func queryEncode(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~$(),")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    static func subscription(of path: String) -> String? {
        let parts = path.split(separator: "/")
        guard parts.count > 1, parts[0].lowercased() == "subscriptions" else { return nil }
        return String(parts[1])
    }

    @discardableResult
    func arm(_ method: String, _ path: String, apiVersion: String, query: [(String, String)] = [], body: [String: Any]? = nil) async throws -> HTTPResponseData {
        let url = try armURL(path, apiVersion: apiVersion, query: query)
        return try await arm(method, url: url, body: body)
    }

    func arm(_ method: String, url: URL, body: [String: Any]? = nil) async throws -> HTTPResponseData {
        var headers: [(name: String, value: String)] = []
        var data: Data?
        if let body {
            data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
            headers.append(("Content-Type", "application/json"))
        }
        let path = url.path
        return try await http.send(AzureRequest(method: method, url: url, headers: headers, body: data, auth: .management,
                                                subscription: Self.subscription(of: path)))
    }

    func armJSON(_ path: String, apiVersion: String, query: [(String, String)] = []) async throws -> [String: Any] {
        try Self.object(try await arm("GET", path, apiVersion: apiVersion, query: query))
    }

    /// Every item of an ARM list, following `nextLink` verbatim until it is absent. A next link on
    /// another host than the ARM endpoint is refused: it would be sent the token.
    func armList(_ path: String, apiVersion: String, query: [(String, String)] = []) async throws -> [[String: Any]] {
        var url: URL? = try armURL(path, apiVersion: apiVersion, query: query)
        var items: [[String: Any]] = []
        var pages = 0
        while let next = url {
            pages += 1
            guard pages <= 10_000 else { throw CloudError(status: 500, code: "TooManyPages", message: "The list at \(path) did not end after 10,000 pages.") }
            let json = try Self.object(try await arm("GET", url: next))
            items += json["value"] as? [[String: Any]] ?? []
            if let link = json["nextLink"] as? String, !link.isEmpty {
                guard let linkURL = URL(string: link), linkURL.host?.lowercased() == http.profile.armEndpoint.host?.lowercased() else {
                    throw CloudError(status: 502, code: "InvalidNextLink", message: "The list at \(path) gave a next link to another host; not followed.")
                }
                url = linkURL
            } else {
                url = nil
            }
        }
        return items
    }

    static func object(_ response: HTTPResponseData) throws -> [String: Any] {
        guard let json = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] else {
            throw CloudError(status: 502, code: "InvalidResponse", message: "The service answered \(response.status) without a JSON object.")
        }
        return json
    }

    /// The operation a write started, from its answer: `Azure-AsyncOperation`, else `Location`, else
    /// the resource's provisioning state (polled at `resourceURL`), else done.
    func handle(_ response: HTTPResponseData, resourceURL: URL?) -> OperationHandle {
        let retryAfter = AzureHTTPClient.retryAfter(response) ?? 5
        if response.status == 204 { return .completed }
        if let async = response.header("Azure-AsyncOperation"), !async.isEmpty { return OperationHandle(id: "async \(async)", retryAfter: retryAfter) }
        if let location = response.header("Location"), !location.isEmpty, response.status == 202 || response.status == 201 {
            return OperationHandle(id: "location \(location)", retryAfter: retryAfter)
        }
        if let resourceURL, let json = try? Self.object(response),
           let state = (json["properties"] as? [String: Any])?["provisioningState"] as? String,
           !ProvisioningState(state).isTerminal {
            return OperationHandle(id: "resource \(resourceURL.absoluteString)", retryAfter: retryAfter)
        }
        return .completed
    }

    public func pollOperation(_ handle: OperationHandle) async throws -> OperationStatus {
        guard let id = handle.id else { return .succeeded }
        let parts = id.split(separator: " ", maxSplits: 1).map(String.init)
        guard parts.count == 2, let url = URL(string: parts[1]) else {
            throw CloudError(status: 400, code: "InvalidOperation", message: "'\(Redaction.text(id))' is not an Azure operation handle.")
        }
        switch parts[0] {
        case "async":
            let response = try await arm("GET", url: url)
            let json = try Self.object(response)
            let status = (json["status"] as? String ?? "InProgress").lowercased()
            switch status {
            case "succeeded": return .succeeded
            case "failed", "canceled", "cancelled":
                return .failed(Self.operationError(json, status: status))
            default:
                return .inProgress(retryAfter: AzureHTTPClient.retryAfter(response) ?? 5)
            }
        case "location":
            do {
                let response = try await arm("GET", url: url)
                if response.status == 202 { return .inProgress(retryAfter: AzureHTTPClient.retryAfter(response) ?? 5) }
                // Some providers' Location (DevTest Labs' Operations_Get) answers 200 with the operation's status.
                if let json = try? Self.object(response), let status = (json["status"] as? String)?.lowercased() {
                    switch status {
                    case "succeeded": return .succeeded
                    case "failed", "canceled", "cancelled": return .failed(Self.operationError(json, status: status))
                    default: return .inProgress(retryAfter: AzureHTTPClient.retryAfter(response) ?? 5)
                    }
                }
                return .succeeded
            } catch let error as CloudError where !error.isTransient && !error.isUnavailable {
                return .failed(error)
            }
        case "resource":
            let response = try await arm("GET", url: url)
            let json = try Self.object(response)
            let state = ProvisioningState((json["properties"] as? [String: Any])?["provisioningState"] as? String ?? "Succeeded")
            if !state.isTerminal { return .inProgress(retryAfter: AzureHTTPClient.retryAfter(response) ?? 5) }
            if state.hasFailed {
                return .failed(CloudError(status: 500, code: "ProvisioningState\(state.rawValue)", message: "The resource ended \(state.rawValue)."))
            }
            return .succeeded
        default:
            throw CloudError(status: 400, code: "InvalidOperation", message: "Unknown operation kind '\(parts[0])'.")
        }
    }

    static func operationError(_ json: [String: Any], status: String) -> CloudError {
        let error = json["error"] as? [String: Any] ?? [:]
        var message = error["message"] as? String ?? "The operation ended \(status)."
        if let details = error["details"] as? [[String: Any]] {
            let texts = details.compactMap { $0["message"] as? String }
            if !texts.isEmpty { message += " (" + texts.joined(separator: "; ") + ")" }
        }
        return CloudError(status: 500, code: error["code"] as? String ?? "Operation\(status.capitalized)", message: Redaction.text(message))
    }

    // MARK: Resource ids

    /// `/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}` → its parts (case as given).
    static func idParts(_ id: String) -> (subscription: String, resourceGroup: String, name: String)? {
        let parts = id.split(separator: "/").map(String.init)
        guard parts.count >= 4, parts[0].lowercased() == "subscriptions", parts[2].lowercased() == "resourcegroups" else { return nil }
        return (parts[1], parts[3], parts.last!)
    }

    static func string(_ dictionary: [String: Any]?, _ path: String...) -> String? {
        var current: Any? = dictionary
        for key in path {
            guard let d = current as? [String: Any] else { return nil }
            current = d[key] ?? d.first { $0.key.lowercased() == key.lowercased() }?.value
        }
        return current as? String
    }

    static func dictionary(_ dictionary: [String: Any]?, _ path: String...) -> [String: Any]? {
        var current: Any? = dictionary
        for key in path { current = (current as? [String: Any])?[key] }
        return current as? [String: Any]
    }

    static let isoFractional = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    static let isoWhole = Date.ISO8601FormatStyle()

    /// ARM's ISO 8601 times, with or without fractional seconds (lists parse one per item: no formatter is made per call).
    static func date(_ text: String?) -> Date? {
        guard let text else { return nil }
        return (try? isoFractional.parse(text)) ?? (try? isoWhole.parse(text))
    }

    static func tags(_ json: [String: Any]) -> [String: String] {
        (json["tags"] as? [String: Any] ?? [:]).compactMapValues { $0 as? String }
    }
}

/// Storage accounts as ARM describes them: each account's Blob endpoint (from
/// `properties.primaryEndpoints.blob`, never assembled from a suffix), its key when Shared Key is
/// used, and user delegation keys for signing copy sources. Read once per account per run.
actor StorageAccountDirectory {
    private var endpoints: [String: URL] = [:]
    private var keys: [String: Data] = [:]
    private var delegationKeys: [String: (key: UserDelegationKey, expiresAt: Date)] = [:]

    func endpoint(_ account: StorageAccountID, load: @Sendable () async throws -> URL) async throws -> URL {
        let k = account.resourceId.lowercased()
        if let url = endpoints[k] { return url }
        let url = try await load()
        endpoints[k] = url
        return url
    }

    func key(_ account: StorageAccountID, load: @Sendable () async throws -> Data) async throws -> Data {
        let k = account.resourceId.lowercased()
        if let key = keys[k] { return key }
        let key = try await load()
        keys[k] = key
        return key
    }

    func delegationKey(_ account: StorageAccountID, now: Date, load: @Sendable () async throws -> (UserDelegationKey, Date)) async throws -> UserDelegationKey {
        let k = account.resourceId.lowercased()
        if let cached = delegationKeys[k], cached.expiresAt.timeIntervalSince(now) > 9 * 3600 { return cached.key }
        let (key, expiresAt) = try await load()
        delegationKeys[k] = (key, expiresAt)
        return key
    }
}

import FactoryModel
import Foundation

/// `Microsoft.Authorization/permissions` at a resource group (Permissions_ListForResourceGroup):
/// what the caller may do there, which `imagefactory doctor` reads. The local cloud grants every
/// action, except those named in `IMAGEFACTORY_SERVE_DENY` (comma-separated; data actions are
/// those under `.../blobServices/...`), so tests can show what a missing role looks like.
extension LocalServeService {
    func permissions(_ request: ServeRequest) -> ServeResponse {
        guard request.method == "GET" else { return Self.methodNotAllowed(request, "GET") }
        let denied = (ProcessInfo.processInfo.environment["IMAGEFACTORY_SERVE_DENY"] ?? "")
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let notData = denied.filter { $0.lowercased().contains("/blobservices/") }
        let notActions = denied.filter { !$0.lowercased().contains("/blobservices/") }
        return page(request, [["actions": ["*"], "notActions": .array(notActions.map { .string($0) }),
                               "dataActions": ["*"], "notDataActions": .array(notData.map { .string($0) })]])
    }
}

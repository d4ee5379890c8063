import Foundation

/// Azure region names a gallery may live in or replicate to, so a typo (`westeurpe`) is caught by
/// `validate` instead of by Azure halfway through a run that already built the images.
///
/// The list is embedded (no network call at validate time) and holds the programmatic names of
/// Azure's public regions, Azure China and Azure US Government. Azure adds regions from time to
/// time: a region missing here is refused with a hint to report it, and added in this file.
public enum AzureRegions {
    /// Programmatic region names (`Location.normalize` form), public cloud first.
    public static let names: Set<String> = Set(publicRegions + chinaRegions + governmentRegions)

    static let publicRegions = [
        // Americas
        "eastus", "eastus2", "centralus", "northcentralus", "southcentralus", "westcentralus", "westus", "westus2", "westus3",
        "canadacentral", "canadaeast", "brazilsouth", "brazilsoutheast", "mexicocentral", "chilecentral",
        // Europe
        "northeurope", "westeurope", "uksouth", "ukwest", "francecentral", "francesouth", "germanywestcentral", "germanynorth",
        "norwayeast", "norwaywest", "swedencentral", "swedensouth", "switzerlandnorth", "switzerlandwest", "polandcentral",
        "italynorth", "spaincentral", "austriaeast", "belgiumcentral", "denmarkeast",
        // Middle East and Africa
        "uaenorth", "uaecentral", "qatarcentral", "israelcentral", "southafricanorth", "southafricawest",
        // Asia Pacific
        "centralindia", "southindia", "westindia", "jioindiawest", "jioindiacentral", "japaneast", "japanwest",
        "koreacentral", "koreasouth", "eastasia", "southeastasia", "indonesiacentral", "malaysiawest", "taiwannorth", "taiwannorthwest",
        "australiaeast", "australiasoutheast", "australiacentral", "australiacentral2", "newzealandnorth",
        // Early-access (canary) regions
        "eastus2euap", "centraluseuap",
    ]
    static let chinaRegions = ["chinanorth", "chinanorth2", "chinanorth3", "chinaeast", "chinaeast2", "chinaeast3"]
    static let governmentRegions = ["usgovvirginia", "usgovtexas", "usgovarizona", "usdodcentral", "usdodeast"]

    /// The separate Azure clouds: a gallery version replicates only to regions of its own cloud.
    public enum Cloud: String, Sendable {
        case publicCloud = "Azure public cloud"
        case china = "Azure China"
        case government = "Azure US Government"
    }

    /// The cloud a known region belongs to; nil for an unknown name.
    public static func cloud(of name: String) -> Cloud? {
        let normalized = Location.normalize(name)
        if chinaRegions.contains(normalized) { return .china }
        if governmentRegions.contains(normalized) { return .government }
        return publicRegions.contains(normalized) ? .publicCloud : nil
    }

    /// Whether `name` (any case, spaces allowed: `West Europe`) is a known Azure region.
    public static func isKnown(_ name: String) -> Bool { names.contains(Location.normalize(name)) }

    /// The known region closest to a name that is not one, for a "did you mean" hint; nil when
    /// nothing is close enough to be a plausible typo.
    public static func suggestion(for name: String) -> String? {
        let normalized = Location.normalize(name)
        var best: (String, Int)?
        for candidate in names.sorted() {
            let distance = EditDistance.levenshtein(normalized, candidate, limit: best?.1 ?? 4)
            if distance != Int.max, best == nil || distance < best!.1 { best = (candidate, distance) }
        }
        guard let (candidate, distance) = best, distance <= max(2, normalized.count / 4) else { return nil }
        return candidate
    }
}

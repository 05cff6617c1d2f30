//! Catalog: loads and validates `connectors/` and `mappings/`, collecting every diagnostic
//! with file:line. Not built yet.

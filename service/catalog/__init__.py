"""The catalogue: accounts, roles and principals, validated once and then read-only."""

from service.catalog.loader import CatalogError, load_catalog, parse_catalog
from service.catalog.model import Account, Catalog, Role, Strategy

__all__ = ["Account", "Catalog", "CatalogError", "Role", "Strategy", "load_catalog", "parse_catalog"]

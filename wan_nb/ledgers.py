"""Open the ledger a ``store=`` names: the SQLite :class:`~wan_nb.store.Store` of a folder,
or the :class:`~wan_nb.store_pg.PgLedger` of a ``postgresql://`` URL (checked first by
:mod:`wan_nb.store_url`, so a URL wan_nb cannot use is refused before anything is made)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .errors import ValidationError
from .store_url import check_store_arg, url_scheme

if TYPE_CHECKING:
    from .store import Store


def open_ledger(store: Any = None, **kwargs: Any) -> Store:
    """The ledger ``store`` names (checked by :func:`check_store_arg`): a ledger as it is, a
    ``postgresql://`` URL (argument, else ``$WAN_NB_STORE``) as a
    :class:`~wan_nb.store_pg.PgLedger`, else the SQLite :class:`~wan_nb.store.Store` of
    the folder."""
    from .store import Store
    from .store_open import ENV_VAR

    if isinstance(store, Store):
        return store
    if store is None and os.environ.get(ENV_VAR):
        try:
            check_store_arg(os.environ[ENV_VAR])
        except ValidationError as exc:
            raise ValidationError([(ENV_VAR, f"{ENV_VAR}: {m}") for _, m in exc.errors]) \
                from None
        store = os.environ[ENV_VAR]
    else:
        check_store_arg(store)
    if isinstance(store, str) and url_scheme(store) is not None:
        from .store_pg import PgLedger

        return PgLedger(store, **kwargs)
    from .store import Store

    return Store(store, **kwargs)

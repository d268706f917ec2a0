"""The shipped contract suite on an adapter it knows nothing about
(toy_adapter.py), in the lines a third-party adapter needs."""

import pytest
from toy_adapter import ToyRepository

from fulltext_jobs.testing import AppSource, ContractBackend, ContractSettings, RepositoryContract


@pytest.fixture
def contract_backend(contract_settings: ContractSettings) -> ContractBackend:
    def make() -> ToyRepository:
        return ToyRepository(clock=contract_settings.clock, lease=contract_settings.lease)

    repo, app = make(), make()

    def set_api(item_id: str, api: object) -> None:  # app's source: eligible ids only
        if api is not None:
            app.add_items([item_id])

    return ContractBackend(repo, repo.add_items, AppSource(app, set_api), build=ToyRepository)


class TestToyRepository(RepositoryContract):
    pass

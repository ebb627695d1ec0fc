"""IMAGE_TAG_VARIABLE values that would change what runs, or print a secret (adversary pass on
``fab deploy --version``): each is a configuration error before any connection."""
import pytest

from commands import versions as versions_cmd
from config import ConfigError, load_settings
from config.validators import UnsafeValue

NO_SANDBOX = {"DEPLOY_SSH_CONFIG": "", "DEPLOY_KNOWN_HOSTS": ""}


@pytest.mark.parametrize("name", ["PATH", "LD_PRELOAD", "DOCKER_HOST", "COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "IFS",
                                  "HOME", "path"])
def test_image_tag_variable_that_the_shell_docker_or_compose_read_is_refused(name):
    with pytest.raises(ConfigError) as exc:
        load_settings("production", {**NO_SANDBOX, "DEPLOY_IMAGE_TAG_VARIABLE": name})
    assert any("IMAGE_TAG_VARIABLE" in p and "read by the shell" in p for p in exc.value.problems)
    with pytest.raises(UnsafeValue):
        versions_cmd.set_variable_command("/srv/app", name, "v2")


@pytest.mark.parametrize("name", ["DB_PASSWORD", "API_TOKEN", "SECRET_TAG"])
def test_image_tag_variable_named_like_a_secret_is_refused(name):
    with pytest.raises(ConfigError) as exc:
        load_settings("production", {**NO_SANDBOX, "DEPLOY_IMAGE_TAG_VARIABLE": name})
    assert any("IMAGE_TAG_VARIABLE" in p and "looks like a secret" in p for p in exc.value.problems)


@pytest.mark.parametrize("name", ["IMAGE_TAG", "image_tag", "BACKEND_VERSION", "APP_PATH_TAG", "RELEASE"])
def test_ordinary_image_tag_variables_load(name):
    assert load_settings("production", {**NO_SANDBOX, "DEPLOY_IMAGE_TAG_VARIABLE": name}).image_tag_variable == name

"""The review web app and the REST API (FastAPI) over one project.

>>> from labelloop.api import create_app
>>> app = create_app(Project.open("spam"))   # then: uvicorn.run(app)
"""

from labelloop.api.app import create_app

__all__ = ["create_app"]

"""The Jinja2 templates of the report folder (``components/report/templates/``, package data)."""

import os

import jinja2

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def template(name: str, html: bool) -> jinja2.Template:
    """The named template; ``html`` turns on autoescaping (values are escaped unless marked safe)."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=html)
    return environment.get_template(name)

"""{{ cookiecutter.analysis_name }}: coffea stages run with swift-rules."""

"""The parts of chatserver/settings.py that are not the settings themselves.

`Settings` (chatserver/settings.py) keeps every setting with its default and
the reason for it; reading them from the environment (`env`), the URLs they
name (`urls`) and the configurations refused or warned about (`checks`) each
have their own module here. Import settings from `chatserver.settings`.
"""

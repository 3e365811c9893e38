"""WeCom 微信客服 (企业微信 customer-service accounts): callbacks say "pull now", kefu pulls and sends by API."""

"use strict";
// The sign-in page's strings, in 简体中文 and English; added to i18n.js's dictionary.
window.YJ_I18N.add({
  zh: {
    "login.title": "义警 · 登录",
    "login.heading": "登录",
    "login.username": "用户名",
    "login.password": "密码",
    "login.submit": "登录",
    "login.busy": "正在登录…",
    "login.hint": "也可以打开 `yijing server` 启动时打印的登录链接。",
    "login.failed": "用户名或密码错误。",
    "login.throttled": "失败次数过多，请 {s} 秒后再试。",
    "login.missing": "请输入用户名和密码。",
    "login.network": "无法连接服务器：{msg}",
  },
  en: {
    "login.title": "Yijing · Sign in",
    "login.heading": "Sign in",
    "login.username": "Username",
    "login.password": "Password",
    "login.submit": "Sign in",
    "login.busy": "Signing in…",
    "login.hint": "Or open the sign-in link printed by `yijing server`.",
    "login.failed": "Unknown username or wrong password.",
    "login.throttled": "Too many failed sign-ins; try again in {s} s.",
    "login.missing": "Enter your username and password.",
    "login.network": "Cannot reach the server: {msg}",
  },
});
